"""Learning on the circuit: the circuit forms its own target (eq. 3) and integrates its own
weight updates (eq. 5), and the training loop runs its wake phases in ngspice.

The netlist (:func:`dfc_analog.circuit.graph.build_graph` with a
:class:`~dfc_analog.circuit.graph.CircuitTarget` and a
:class:`~dfc_analog.circuit.graph.CircuitPlasticity`) takes from the software only the input x,
the label y and the weights: a track-and-hold keeps r_L^- at the controller's switch-on, a
B-source forms r* from it and y, and one integrator capacitor per forward synapse and bias
accumulates eq. (5) over the phase. :func:`read_update` turns the capacitors' final voltages into
the update of :func:`dfc_analog.learning.forward_update` (its scale, −(2/B) (1/T) Σ_b ∫ ...).

:class:`SpiceWake` is the wake phase of ``python -m dfc_analog.train --simulator spice``: a pool of
persistent ngspice processes (:func:`dfc_analog.circuit.ngspice_worker.serve`), each of which
loads the netlist once and then, per minibatch, alters the weights that changed and, per sample,
the input and label sources, re-runs the transient and returns the integrators' final values.
The samples of a minibatch are split among the processes (:class:`SpicePool`, shared with
:class:`SpiceSleep`, the training loop's sleep phase in ngspice; :func:`circuit_phases` gives
the loop both).

:func:`sleep_phase` is the sleep phase of §5 in ngspice (:class:`~dfc_analog.circuit.graph.
CircuitSleep`): the circuit holds its own target r* = r_L^-, its apical compartments low-pass
the noise of eq. (12) (a seeded Wiener path from the named seed stream ``sleep_circuit``, or
ngspice's TRNOISE), and one integrator per feedback synapse accumulates eq. (13)'s -v_A uᵀ;
:func:`read_feedback_update` turns their final voltages into the update of
:func:`dfc_analog.learning.sleep.feedback_update` (⟨v_A uᵀ⟩ / σ̂²). Driven by the same unit
samples ξ, :func:`feedback_update` (``noise=``) and the circuit follow the same Wiener path.

:func:`single_phase` is single-phase operation (paper §7, App. C.3) in ngspice
(:class:`~dfc_analog.circuit.graph.CircuitSinglePhase`): the wake phase's circuit with its own
target and eq. (5) integrators, the sleep phase's noise (the stream ``single_phase_circuit``,
:func:`single_phase_noise`) low-passed by τ_A into the apical sums, and eq. (13)'s integrators
on the RC high-pass of u; :func:`read_update` and :func:`read_feedback_update` give both
updates in the scale of :func:`dfc_analog.learning.single_phase.single_phase_update`, which,
driven by the same ξ (``noise=``), follows the same Wiener path. :class:`SpiceSinglePhase` is
the training loop's single phase in ngspice (``--simulator spice --schedule single-phase``), on
the same pool: per minibatch the weights W, Q, b and the step g, per sample the input, label and
noise sources, the noise drawn as the model's single phase draws it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pickle
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch

from dfc_analog.parallel import available_cores
from dfc_analog.circuit import ngspice_worker
from dfc_analog.circuit.graph import (CircuitPlasticity, CircuitTarget, Scaling, build_graph,
                                      controller_name, feedback_integrator_name, input_name,
                                      integrator_name, single_phase_graph, sleep_graph)
from dfc_analog.circuit.netlist import (SpiceOptions, learning_nodes, noise_corners, saved_nodes,
                                        write_netlist)
from dfc_analog.circuit.simulate import NgspiceError, run_netlist, trajectory_from_vectors
from dfc_analog.config.seeds import generator
from dfc_analog.errors import ConfigError
from dfc_analog.learning.forward import ForwardSettings, ForwardUpdate
from dfc_analog.learning.single_phase import SinglePhaseParams, draw_phase_noise
from dfc_analog.learning.sleep import SleepParams, draw_noise
from dfc_analog.learning.targets import target_gain, task_loss
from dfc_analog.model.network import DFCNetwork
from dfc_analog.model.trajectory import Trajectory
from dfc_analog.training.loop import simulated_sleep

# ngspice's own trtol for training: ΔW is a time average and needs no tighter local error
# control than this (toy net: angle to the ODE update 0.0035° against 0.0032° at trtol 0.25),
# and a third fewer Newton iterations.
TRAINING_TRTOL = 7.0
# A persistent ngspice process is replaced after this many transients (ngspice keeps ~50 kB
# of each run).
RUNS_PER_PROCESS = 2000


def integrator_names(sizes: list, bias: bool) -> list:
    """The integrator nodes in the order of :func:`read_update`: W_1 row by row, ..., W_L, then
    b_1, ..., b_L."""
    names = [integrator_name(i, k, j) for i in range(1, len(sizes))
             for k in range(sizes[i]) for j in range(sizes[i - 1])]
    if bias:
        names += [integrator_name(i, k) for i in range(1, len(sizes)) for k in range(sizes[i])]
    return names


def read_update(sizes: list, bias: bool, values: np.ndarray, v_scale: float) -> list:
    """gW_1..gW_L, gb_1..gb_L (float64 tensors) from the integrators' final voltages ``values``
    (B, len(integrator_names)) of a minibatch: g = −(2/B) Σ_b V_b / v_scale
    (:class:`~dfc_analog.circuit.graph.CircuitPlasticity`; zeros for the biases without them)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1, len(integrator_names(sizes, bias)))
    g = -2.0 / values.shape[0] * values.sum(0) / v_scale
    L = len(sizes) - 1
    gW, n = [], 0
    for i in range(1, L + 1):
        size = sizes[i] * sizes[i - 1]
        gW.append(torch.from_numpy(g[n:n + size].reshape(sizes[i], sizes[i - 1]).copy()))
        n += size
    gb = []
    for i in range(1, L + 1):
        gb.append(torch.from_numpy(g[n:n + sizes[i]].copy()) if bias
                  else torch.zeros(sizes[i], dtype=torch.float64))
        n += sizes[i] if bias else 0
    return gW + gb


def feedback_integrator_names(sizes: list) -> list:
    """The feedback-synapse integrator nodes in the order of :func:`read_feedback_update`: Q_1
    row by row, ..., Q_L."""
    return [feedback_integrator_name(i, k, m) for i in range(1, len(sizes))
            for k in range(sizes[i]) for m in range(sizes[-1])]


def read_feedback_update(sizes: list, values: np.ndarray, v_scale: float) -> list:
    """g_Q_1..g_Q_L (float64 tensors (n_i, n_L)) from the feedback integrators' final voltages
    ``values`` (B, len(feedback_integrator_names)) of a minibatch's sleep phases:
    g = -(1/B) Σ_b V_b / v_scale, the format and scale of :func:`feedback_update`
    (:class:`~dfc_analog.circuit.graph.CircuitSleep`)."""
    n_L = sizes[-1]
    values = np.asarray(values, dtype=np.float64).reshape(-1, sum(sizes[1:]) * n_L)
    g = -values.sum(0) / (values.shape[0] * v_scale)
    out, n = [], 0
    for size in sizes[1:]:
        out.append(torch.from_numpy(g[n:n + size * n_L].reshape(size, n_L).copy()))
        n += size * n_L
    return out


def sleep_noise(p: SleepParams, sizes: list, seed: int, sample: int) -> torch.Tensor:
    """The unit samples ξ (steps, 1, Σ n_i) of the sleep phase of input ``sample`` under noise
    seed ``seed``: draw (seed, sample) of the named stream ``sleep_circuit``, drawn as
    :func:`feedback_update` draws them, so that ``feedback_update(net, x[None], p,
    generator('sleep_circuit', seed, sample))`` follows the same path."""
    return draw_noise((p.steps, 1, sum(sizes[1:])), generator("sleep_circuit", seed, sample))


@dataclass
class CircuitSleepPhase:
    """One sleep phase simulated by the circuit: the trajectory, the held output r_L^- (the
    target, n_L,) and, with the integrators, the update they accumulated (g_Q_1..g_Q_L as a
    minibatch of one; ``None`` without them)."""

    trajectory: Trajectory
    held: np.ndarray
    update: list | None


def _phase_setup(p, times, scaling: Scaling | None, options: SpiceOptions | None) -> tuple:
    """(scaling, options, T = p.steps · p.dt, the trajectory's grid: ``times`` or 0 and T) of a
    noise-driven phase (sleep or single phase)."""
    T = p.steps * p.dt
    times = np.array([0.0, T]) if times is None else \
        np.asarray(times, dtype=np.float64).reshape(-1)
    return scaling or Scaling(), options or SpiceOptions(), T, times


def sleep_phase(net: DFCNetwork, x, p: SleepParams, noise=None, times=None,
                scaling: Scaling | None = None, options: SpiceOptions | None = None,
                settle: float = 1.0, plasticity: bool = True) -> CircuitSleepPhase:
    """The sleep phase (eqs. 12-13) of one input ``x`` (n_0,) in ngspice over T = p.steps · p.dt:
    ``noise`` the unit samples ξ (steps, Σ n_i) or (steps, 1, Σ n_i) the noise sources play
    (e.g. :func:`sleep_noise`), or ``None`` for ngspice's unseeded TRNOISE; ``times`` the
    trajectory's grid in [0, T] (default 0 and T); with ``plasticity`` the feedback integrators
    give the update."""
    scaling, options, T, times = _phase_setup(p, times, scaling, options)
    sizes = net.layer_sizes
    noise = _unit_samples(noise)
    g = sleep_graph(net, p, scaling, x, plasticity)
    names = feedback_integrator_names(sizes) if plasticity else []
    data = run_netlist(write_netlist(g, "sleep", T, times, settle, options, noise),
                       saved_nodes(g) + learning_nodes(g), options.isolate)
    traj = trajectory_from_vectors(sizes, data, scaling, times, settle * scaling.time_scale)
    vs = scaling.v_scale
    held = np.array([data[controller_name("hold", m)][-1] for m in range(sizes[-1])]) / vs
    update = read_feedback_update(sizes, np.array([[data[n][-1] for n in names]]), vs) \
        if plasticity else None
    return CircuitSleepPhase(traj, held, update)


def single_phase_noise(p: SinglePhaseParams, sizes: list, seed: int, sample: int) -> torch.Tensor:
    """The unit samples ξ (steps, 1, Σ n_i) of the single phase of input ``sample`` under noise
    seed ``seed``: draw (seed, sample) of the named stream ``single_phase_circuit``, drawn step
    by step as :func:`~dfc_analog.learning.single_phase.single_phase_update` draws them, so that
    ``single_phase_update(net, x[None], y[None], p, generator('single_phase_circuit', seed,
    sample))`` follows the same path."""
    return draw_phase_noise(p, 1, sum(sizes[1:]),
                            generator("single_phase_circuit", seed, sample))


@dataclass
class CircuitSinglePhaseRun:
    """One single phase simulated by the circuit: the trajectory, the held output r_L^- and the
    target r* the circuit formed (n_L,), and, with the integrators, the updates they
    accumulated as a minibatch of one (``update``: gW_1..gW_L, gb_1..gb_L; ``feedback_update``:
    g_Q_1..g_Q_L; ``None`` without them)."""

    trajectory: Trajectory
    held: np.ndarray
    target: np.ndarray
    update: list | None
    feedback_update: list | None


def single_phase(net: DFCNetwork, x, y, p: SinglePhaseParams, noise=None, times=None,
                 scaling: Scaling | None = None, options: SpiceOptions | None = None,
                 settle: float = 1.0, batch: int = 1,
                 plasticity: bool = True) -> CircuitSinglePhaseRun:
    """The single phase (App. C.3) of one sample ``x`` (n_0,) with label ``y`` in ngspice over
    T = p.steps · p.dt, the circuit forming r* (eq. 3 with ``p``'s loss, reduction and λ for a
    minibatch of ``batch``): ``noise`` the unit samples ξ (steps, Σ n_i) or (steps, 1, Σ n_i)
    its noise sources play (e.g. :func:`single_phase_noise`), or ``None`` for ngspice's unseeded
    TRNOISE; ``times`` the trajectory's grid in [0, T] (default 0 and T); with ``plasticity``
    the integrators of eqs. (5) and (13) give both updates."""
    scaling, options, T, times = _phase_setup(p, times, scaling, options)
    sizes = net.layer_sizes
    g = single_phase_graph(net, p, scaling, x, y, batch, plasticity)
    data = run_netlist(write_netlist(g, "single-phase", T, times, settle, options,
                                     _unit_samples(noise)),
                       saved_nodes(g) + learning_nodes(g), options.isolate)
    traj = trajectory_from_vectors(sizes, data, scaling, times, settle * scaling.time_scale)
    n_L, vs = sizes[-1], scaling.v_scale
    held = np.array([data[controller_name("hold", m)][-1] for m in range(n_L)]) / vs
    r_star = np.array([data[controller_name("target", m)][-1] for m in range(n_L)]) / vs
    if not plasticity:
        return CircuitSinglePhaseRun(traj, held, r_star, None, None)

    def final(names):
        return np.array([[data[n][-1] for n in names]])

    return CircuitSinglePhaseRun(
        traj, held, r_star,
        read_update(sizes, net.has_bias, final(integrator_names(sizes, net.has_bias)), vs),
        read_feedback_update(sizes, final(feedback_integrator_names(sizes)), vs))


def _unit_samples(noise):
    """ξ as a float64 array (steps, Σ n_i) from a tensor or array (steps, Σ n_i) or
    (steps, 1, Σ n_i); ``None`` stays ``None``."""
    if noise is None:
        return None
    noise = np.asarray(noise.detach().cpu() if hasattr(noise, "detach") else noise,
                       dtype=np.float64)
    return noise[:, 0] if noise.ndim == 3 and noise.shape[1] == 1 else noise


@dataclass
class CircuitPhase:
    """One wake phase simulated with the circuit's own target and integrators: the trajectory,
    the held output r_L^- and the target r* the circuit formed (n_L,), and the update it
    integrated (``update``: gW_1..gW_L, gb_1..gb_L as a minibatch of one)."""

    trajectory: Trajectory
    held: np.ndarray
    target: np.ndarray
    update: list


def learning_phase(net: DFCNetwork, x, y, settings: ForwardSettings, times,
                   scaling: Scaling | None = None, options: SpiceOptions | None = None,
                   settle: float = 1.0, batch: int = 1) -> CircuitPhase:
    """The wake phase of one sample ``x`` (n_0,) with label ``y`` in ngspice, the circuit
    forming r* (eq. 3 with ``settings``' loss, reduction and λ for a minibatch of ``batch``)
    and integrating eq. (5) (``settings.params.plasticity``) over [0, settings.t_end]."""
    scaling = scaling or Scaling()
    options = options or SpiceOptions()
    sizes = net.layer_sizes
    target = CircuitTarget(settings.loss, target_gain(settings.loss, settings.reduction,
                                                      settings.target_stepsize, batch,
                                                      sizes[-1]))
    plasticity = CircuitPlasticity(settings.params.plasticity, settings.t_end)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    g = build_graph(net, settings.params, scaling, x, None, label=y, target=target,
                    plasticity=plasticity)
    data = run_netlist(write_netlist(g, "wake", settings.t_end, times, settle, options),
                       saved_nodes(g) + learning_nodes(g), options.isolate)
    traj = trajectory_from_vectors(sizes, data, scaling, times, settle * scaling.time_scale)
    n_L, vs = sizes[-1], scaling.v_scale
    held = np.array([data[controller_name("hold", m)][-1] for m in range(n_L)]) / vs
    r_star = np.array([data[controller_name("target", m)][-1] for m in range(n_L)]) / vs
    names = integrator_names(sizes, net.has_bias)
    update = read_update(sizes, net.has_bias, np.array([[data[n][-1] for n in names]]), vs)
    return CircuitPhase(traj, held, r_star, update)


class SpiceProcess:
    """One persistent ngspice process (``ngspice_worker.py --serve``) and the element values it
    was last given."""

    def __init__(self, netlist: str):
        self.proc = subprocess.Popen([sys.executable, ngspice_worker.__file__, "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.values: dict = {}
        self.runs = 0
        self.send(("load", netlist))
        self.receive()

    def send(self, request) -> None:
        try:
            pickle.dump(request, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise NgspiceError(self._ended()) from None

    def receive(self):
        try:
            status, value = pickle.load(self.proc.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):
            raise NgspiceError(self._ended()) from None
        if status != "ok":
            raise NgspiceError(value)
        return value

    def _ended(self) -> str:
        return (f"an ngspice worker process ended unexpectedly (exit status "
                f"{self.proc.poll()}).")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(("quit",))
                self.proc.stdin.close()
            except NgspiceError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SpicePool:
    """Persistent ngspice processes (:class:`SpiceProcess`) that share the samples of each
    minibatch: each loads the pool's ``netlist`` once (set by the phase on its first call) and
    is replaced after :data:`RUNS_PER_PROCESS` transients. :meth:`run` splits a minibatch's
    samples among ``workers`` processes; each process first alters the elements whose values
    changed since its last minibatch, then per sample that sample's changes, and runs the
    transient. Use it as a context manager (the processes end on exit)."""

    def __init__(self, workers: int, what: str):
        if workers < 1:
            raise ConfigError(f"the SPICE {what} needs at least one worker, got {workers}.")
        self.workers = workers
        self.netlist = None
        self.processes: list = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.processes:
            proc.close()
        self.processes = []

    def _process(self, n: int) -> SpiceProcess:
        while len(self.processes) <= n:
            self.processes.append(SpiceProcess(self.netlist))
        if self.processes[n].runs >= RUNS_PER_PROCESS:
            self.processes[n].close()
            self.processes[n] = SpiceProcess(self.netlist)
        return self.processes[n]

    def run(self, values: dict, per_sample: list, vectors: list) -> np.ndarray:
        """The final values (B, len(vectors)) of the named nodes over a minibatch: ``values``
        (``'NAME PARAM'`` → value) what the minibatch fixes, ``per_sample`` one (alter
        commands, vector parameters) pair per sample (``ngspice_worker.serve``)."""
        chunks = np.array_split(np.arange(len(per_sample)), min(self.workers, len(per_sample)))
        busy = []
        for n, chunk in enumerate(chunks):
            proc = self._process(n)
            common = [f"alter {key} = {float(v)!r}" for key, v in values.items()
                      if proc.values.get(key) != v]
            proc.send(("run", common, [per_sample[b] for b in chunk], vectors))
            proc.values = values
            proc.runs += len(chunk)
            busy.append(proc)
        try:
            return np.concatenate([proc.receive() for proc in busy])
        except NgspiceError:
            self.close()        # the other processes' replies are unread: start afresh
            raise


def weight_values(net: DFCNetwork, scaling: Scaling) -> dict:
    """Element → value of a network's weights in a circuit written with ``every_synapse``:
    the gain w/R of each forward and feedback synapse's VCCS and the bias currents
    b v_scale / R."""
    R, vs = scaling.resistance, scaling.v_scale
    values = {}
    for i in range(1, net.num_layers + 1):
        for kind, mats in (("w", net.W), ("q", net.Q)):
            M = mats[i - 1].detach().cpu().double().numpy() / R
            for (k, j), value in np.ndenumerate(M):
                values[f"G{kind}{i}_{k}_{j} gain"] = value
        if net.has_bias:
            b = net.b[i - 1].detach().cpu().double().numpy() * vs / R
            for k, value in enumerate(b):
                values[f"Ib{i}_{k} dc"] = value
    return values


def input_commands(x: np.ndarray, scaling: Scaling) -> list:
    """The alter commands of one input sample x (n_0,): the input currents x v_scale / R."""
    R, vs = scaling.resistance, scaling.v_scale
    return [f"alter I{input_name(j)} dc = {float(v) * vs / R!r}" for j, v in enumerate(x)]


def sample_commands(x: torch.Tensor, y: torch.Tensor, loss: str, n_L: int,
                    scaling: Scaling) -> list:
    """Per sample of a minibatch (x, y) the alter commands of its input currents
    (:func:`input_commands`) and its n_L label sources (y, or one-hot of the class for
    cross-entropy; v_scale per unit) in a circuit with its own target (graph.CircuitTarget)."""
    vs = scaling.v_scale
    y = y.detach().cpu().numpy()
    labels = np.eye(n_L)[y.astype(np.int64)] if loss == "cross_entropy" else y
    return [input_commands(xb, scaling)
            + [f"alter V{controller_name('label', m)} dc = {float(v) * vs!r}"
               for m, v in enumerate(yb)]
            for xb, yb in zip(x.detach().cpu().double().numpy(), labels)]


class SpiceWake(SpicePool):
    """The wake phase of DFC in ngspice, for the training loop: ``wake(net, x, y)`` returns the
    :class:`~dfc_analog.learning.ForwardUpdate` of the minibatch (x, y) whose target and eq. (5)
    update the circuit computed itself, in the scale of :func:`forward_update` (the loss is the
    feed-forward loss of the network, as on the ODE path).

    ``workers`` persistent ngspice processes share each minibatch's samples (:class:`SpicePool`).
    The netlist is written once, from the first network seen (``every_synapse``: a weight may
    become 0 and later not); each call alters only the elements whose values changed: the
    weights (:func:`weight_values`) and the target step g when the minibatch size changes, and
    per sample the input currents and label sources. ``options`` default to
    SpiceOptions(trtol=TRAINING_TRTOL)."""

    def __init__(self, settings: ForwardSettings, workers: int = 1, scaling: Scaling | None = None,
                 options: SpiceOptions | None = None, settle: float = 1.0):
        if settings.method != "dfc":
            raise ConfigError(f"the circuit integrates eq. (5) along the phase (method 'dfc'), "
                              f"not '{settings.method}'.")
        super().__init__(workers, "wake phase")
        self.settings = settings
        self.scaling = scaling or Scaling()
        self.options = dataclasses.replace(options or SpiceOptions(trtol=TRAINING_TRTOL),
                                           every_synapse=True)
        self.settle = settle

    def _prepare(self, net: DFCNetwork) -> None:
        s = self.settings
        sizes = net.layer_sizes
        target = CircuitTarget(s.loss, target_gain(s.loss, s.reduction, s.target_stepsize, 1,
                                                   sizes[-1]))
        g = build_graph(net, s.params, self.scaling, None, None, constant_input=False,
                        target=target, plasticity=CircuitPlasticity(s.params.plasticity, s.t_end))
        self.netlist = write_netlist(g, "wake", s.t_end, np.array([0.0, s.t_end]), self.settle,
                                     self.options)
        self.sizes, self.bias = list(sizes), bool(net.has_bias)
        self.vectors = integrator_names(sizes, net.has_bias)

    @torch.no_grad()
    def __call__(self, net: DFCNetwork, x: torch.Tensor, y: torch.Tensor) -> ForwardUpdate:
        if self.netlist is None:
            self._prepare(net)
        elif net.layer_sizes != self.sizes:
            raise ConfigError("the SPICE wake phase was written for another network.")
        B = x.shape[0]
        _, r_ff = net.feedforward(x)
        loss = float(task_loss(r_ff[-1], y, self.settings.loss))
        s = self.settings
        values = weight_values(net, self.scaling)
        values[f"V{controller_name('step')} dc"] = target_gain(
            s.loss, s.reduction, s.target_stepsize, B, net.layer_sizes[-1])
        finals = self.run(values, [(commands, {}) for commands in sample_commands(
            x, y, s.loss, self.sizes[-1], self.scaling)], self.vectors)
        g = read_update(self.sizes, self.bias, finals, self.scaling.v_scale)
        g = [t.to(dtype=x.dtype, device=x.device) for t in g]
        L = net.num_layers
        return ForwardUpdate(g[:L], g[L:], loss)


class SpiceSleep(SpicePool):
    """The sleep phase (eqs. 12-13) in ngspice, for the training loop: ``sleep(net, x,
    generator)`` returns g_Q_1..g_Q_L of the minibatch x read from the circuit's eq. (13)
    integrators (:func:`read_feedback_update`), in the format and scale of
    :func:`~dfc_analog.learning.sleep.feedback_update` (``sleep_phase``'s circuit,
    :class:`~dfc_analog.circuit.graph.CircuitSleep`).

    The noise: the unit samples ξ (steps, B, Σ n_i) are drawn from ``generator`` as
    feedback_update draws them (:func:`~dfc_analog.learning.sleep.draw_noise`), and sample b's
    noise sources play ξ[:, b] as their Wiener path (:func:`~dfc_analog.circuit.netlist.
    noise_corners`): for the same generator the circuit and the model run the same path.

    ``workers`` persistent ngspice processes share each minibatch (:class:`SpicePool`). The
    netlist is written once, from the first network seen (``every_synapse``), with PWL noise
    sources; each call alters the weights W, Q and biases that changed (:func:`weight_values`),
    and per sample the input currents and each noise source's 2 (steps + 2) corners (through a
    rawfile: ``ngspice_worker._alter_vectors``). ``options`` default to SpiceOptions() (ngspice's
    step is bounded by the noise corners every Δt_fb anyway)."""

    def __init__(self, params: SleepParams, workers: int = 1, scaling: Scaling | None = None,
                 options: SpiceOptions | None = None, settle: float = 1.0):
        super().__init__(workers, "sleep phase")
        self.params = params
        self.scaling = scaling or Scaling()
        self.options = dataclasses.replace(options or SpiceOptions(), every_synapse=True)
        self.settle = settle

    def _prepare(self, net: DFCNetwork) -> None:
        p = self.params
        sizes = net.layer_sizes
        self.graph = sleep_graph(net, p, self.scaling, None, constant_input=False)
        T = p.steps * p.dt
        self.columns = sum(sizes[1:])
        self.netlist = write_netlist(self.graph, "sleep", T, np.array([0.0, T]), self.settle,
                                     self.options, np.zeros((p.steps, self.columns)))
        self.sizes = list(sizes)
        self.vectors = feedback_integrator_names(sizes)

    @torch.no_grad()
    def __call__(self, net: DFCNetwork, x: torch.Tensor, generator: torch.Generator) -> list:
        if self.netlist is None:
            self._prepare(net)
        elif net.layer_sizes != self.sizes:
            raise ConfigError("the SPICE sleep phase was written for another network.")
        noise = draw_noise((self.params.steps, x.shape[0], self.columns), generator, x.device)
        noise = noise.cpu().double().numpy()
        t_on = self.settle * self.scaling.time_scale
        per_sample = [(input_commands(xb, self.scaling),
                       {f"@{name}[pwl]": corners for name, corners in
                        noise_corners(self.graph, self.graph.graph["sleep"]["params"], t_on,
                                      noise[:, b]).items()})
                      for b, xb in enumerate(x.detach().cpu().double().numpy())]
        finals = self.run(weight_values(net, self.scaling), per_sample, self.vectors)
        g = read_feedback_update(self.sizes, finals, self.scaling.v_scale)
        return [t.to(dtype=x.dtype, device=x.device) for t in g]


class SpiceSinglePhase(SpicePool):
    """Single-phase operation (paper §7, App. C.3) in ngspice, for the training loop:
    ``single(net, x, y, generator)`` returns (the :class:`~dfc_analog.learning.ForwardUpdate`,
    g_Q_1..g_Q_L) of the minibatch (x, y), both read from the integrators of the single phase's
    circuit (:func:`single_phase`'s, :class:`~dfc_analog.circuit.graph.CircuitSinglePhase`:
    its own target, eq. (5) on W and b, eq. (13) on the high-passed control, from fb_delay on),
    in the format and scale of :func:`~dfc_analog.learning.single_phase.single_phase_update`
    (the loss is the feed-forward loss of the network, as on the ODE path).

    The noise: the unit samples ξ (steps, B, Σ n_i) are drawn from ``generator`` as
    single_phase_update draws them (:func:`~dfc_analog.learning.single_phase.draw_phase_noise`),
    and sample b's noise sources play ξ[:, b] as their Wiener path: for the same generator the
    circuit and the model run the same path.

    ``workers`` persistent ngspice processes share each minibatch (:class:`SpicePool`). The
    netlist is written once, from the first network seen (``every_synapse``), with PWL noise
    sources; each call alters the weights W, Q and biases that changed (:func:`weight_values`)
    and the target step g when the minibatch size changes, and per sample the input currents,
    the label sources (:func:`sample_commands`) and each noise source's corners (through a
    rawfile, as :class:`SpiceSleep`). ``options`` default to SpiceOptions(trtol=TRAINING_TRTOL)
    (ngspice's step is bounded by the noise corners every Δt anyway)."""

    def __init__(self, params: SinglePhaseParams, workers: int = 1,
                 scaling: Scaling | None = None, options: SpiceOptions | None = None,
                 settle: float = 1.0):
        super().__init__(workers, "single phase")
        self.params = params
        self.scaling = scaling or Scaling()
        self.options = dataclasses.replace(options or SpiceOptions(trtol=TRAINING_TRTOL),
                                           every_synapse=True)
        self.settle = settle

    def _prepare(self, net: DFCNetwork) -> None:
        p = self.params
        sizes = net.layer_sizes
        self.graph = single_phase_graph(net, p, self.scaling, constant_input=False)
        T = p.steps * p.dt
        self.columns = sum(sizes[1:])
        self.netlist = write_netlist(self.graph, "single-phase", T, np.array([0.0, T]),
                                     self.settle, self.options, np.zeros((p.steps, self.columns)))
        self.sizes, self.bias = list(sizes), bool(net.has_bias)
        self.forward = integrator_names(sizes, net.has_bias)
        self.vectors = self.forward + feedback_integrator_names(sizes)

    @torch.no_grad()
    def __call__(self, net: DFCNetwork, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> tuple:
        if self.netlist is None:
            self._prepare(net)
        elif net.layer_sizes != self.sizes:
            raise ConfigError("the SPICE single phase was written for another network.")
        p, B = self.params, x.shape[0]
        noise = draw_phase_noise(p, B, self.columns, generator, x.device).cpu().double().numpy()
        _, r_ff = net.feedforward(x)
        loss = float(task_loss(r_ff[-1], y, p.loss))
        values = weight_values(net, self.scaling)
        values[f"V{controller_name('step')} dc"] = target_gain(
            p.loss, p.reduction, p.target_stepsize, B, self.sizes[-1])
        t_on = self.settle * self.scaling.time_scale
        params = self.graph.graph["single_phase"]["params"]
        per_sample = [(commands, {f"@{name}[pwl]": corners for name, corners in
                                  noise_corners(self.graph, params, t_on, noise[:, b]).items()})
                      for b, commands in enumerate(sample_commands(x, y, p.loss, self.sizes[-1],
                                                                   self.scaling))]
        finals = self.run(values, per_sample, self.vectors)
        n, vs = len(self.forward), self.scaling.v_scale
        g = [t.to(dtype=x.dtype, device=x.device) for t in
             read_update(self.sizes, self.bias, finals[:, :n], vs)]
        g_Q = [t.to(dtype=x.dtype, device=x.device) for t in
               read_feedback_update(self.sizes, finals[:, n:], vs)]
        L = net.num_layers
        return ForwardUpdate(g[:L], g[L:], loss), g_Q


@contextlib.contextmanager
def circuit_phases(cfg):
    """The phases :func:`dfc_analog.training.loop.run_training` takes for ``cfg.simulator``, as
    its keyword arguments: none for 'ode' (the ODE solver and the model's sleep phase); for
    'spice' the wake phase in ngspice (:class:`SpiceWake`), or with ``schedule =
    'single-phase'`` the single phase (:class:`SpiceSinglePhase`), and, when the run has
    simulated sleep passes (pre-training, the two-phase schedule's sleep passes), the sleep
    phase in ngspice too (:class:`SpiceSleep`; the expected sleep stays the model's closed
    form, which no circuit simulates). Each has one ngspice process per thread
    (``cfg.threads``; 0: the cores available), started when first used; they end on exit."""
    if cfg.simulator != "spice":
        yield {}
        return
    ngspice_worker_check()
    workers = cfg.threads or available_cores()
    with contextlib.ExitStack() as stack:
        phases = {"single": stack.enter_context(SpiceSinglePhase(
            SinglePhaseParams.from_config(cfg), workers=workers))} \
            if cfg.schedule == "single-phase" else \
            {"wake": stack.enter_context(SpiceWake(ForwardSettings.from_config(cfg),
                                                   workers=workers))}
        if simulated_sleep(cfg):
            phases["sleep"] = stack.enter_context(SpiceSleep(SleepParams.from_config(cfg),
                                                             workers=workers))
        yield phases


def ngspice_worker_check() -> None:
    """Say in one sentence that ngspice is missing, before any process starts."""
    try:
        ngspice_worker.library_path()
    except ngspice_worker.SimulatorFailure as exc:
        raise NgspiceError(str(exc)) from None
