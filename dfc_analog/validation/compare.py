"""Validation of the circuit against the model: ``dfc-validate RUN_DIR`` (also
``python -m dfc_analog.validate``).

For each test sample of a run the same phase is simulated twice from the same input x and the
same output target r* of eq. (3): by the SPICE circuit (:func:`dfc_analog.circuit.simulate_circuit`)
and by the ODE of eqs. (1) and (4) (:func:`dfc_analog.solvers.simulate_wake`, Dormand–Prince with
tolerances a thousand times tighter than the simulator's ``reltol``). The ODE is evaluated at the
very time points the circuit returns, so both trajectories lie on one grid and nothing is
interpolated. Then, per signal group (soma, basal, apical and rate of each layer; the controller's
u, u_int and error e):

    range     R = max(max - min over time and neurons of the reference, F)
    max error max |circuit - reference| / R,  RMS error  rms(circuit - reference) / R
    steady    |circuit - reference| / R at the end of the phase (the steady state of Lemma 1)

and the same for the *departure* of every soma from its own feed-forward state, v_i(t) - v_i(0),
which is what the eq. (5) rule reads. The eq. (5) weight update of DFC,
g_W_i = -(2/B)(1/T) ∫ (φ(v_i) - φ(v_B,i)) r_{i-1}ᵀ dt (trapezoidal rule on the common grid, the same
function for both trajectories), gives an angle between circuit and model updates; classifiers also
compare the predicted class (argmax of the feed-forward output r_L^- of eq. 2).

Tolerance rule. ngspice keeps every node voltage within reltol·|V| + vntol of its converged value
and the local truncation error within a multiple (trtol) of that, so a signal group whose largest
magnitude is P (model units) is trusted to

    tol = k · (reltol · P + F) / R,     F = (vntol + abstol · R_circuit) / v_scale,

with k = ``safety`` (default 10) and F the simulator's absolute resolution in model units: its
voltage tolerance plus the voltage its current tolerance makes across the summing resistance
R_circuit. F also floors the range R. A soma's departure is judged with the P of the soma itself
(the simulator controls the absolute voltage, not the departure) and the departure's own range;
the eq. (5) update with an angle of min(1°, largest soma-departure tol read in radians). The ODE
reference is solved with rtol = atol = 1e-3 · reltol (its state is the departure from the
feed-forward state in units of the nudge max|δ_L|, see :mod:`dfc_analog.model.dynamics`; in the
feed-forward phase the nudge is zero, the unit is one model unit and the tolerance 1e-3 · F),
so its own error is negligible.
A sample passes when every group, every departure and the update angle are within tolerance and,
for classifiers, both predict the same class.

Read noise as a process (a hardware spec with ``read_interval`` > 0). (a) The sample-for-sample
comparison above runs on the realisation with the process off (the same device draws). (b) The
noise is compared in distribution (:func:`check_read_noise`): for the first ``noise_samples``
samples, ``noise_seeds`` = N noise realisations of the circuit (independent runs in parallel;
``circuit_noise='pwl'``: PWL sources whose unit samples come from the named stream
``circuit_read_noise``, so two runs give the same numbers; ``'trnoise'``: ngspice's TRNOISE,
which ngspice 39 cannot seed) and N of the emulation (the named stream ``read_noise``, one
batched solve); per sample the total variance over seeds (the trace of the covariance) of the
settled output rates r_L(t_end) and of the eq. (5) update. Under equal variances the ratio
s²_circuit / s²_emulation of one direction follows F(N−1, N−1); a trace sums several directions,
whose ratio spreads less (Satterthwaite: at least N−1 degrees of freedom each), so the two-sided
bounds [F_{(1−c)/2}, F_{(1+c)/2}] of F(N−1, N−1) at confidence c (``noise_confidence``, 0.99)
are conservative. The check passes when every ratio lies within them. (c) With PWL sources the
circuit can carry the emulation's own path: per sample, the circuit driven by the unit samples
of the emulation's noise seed 0 is compared with the emulation of that path sample for sample,
under the rule above (:func:`same_path`), which a wrong noise amplitude fails where the F test
over a few seeds cannot see it.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dfc_analog.circuit.graph import Scaling
from dfc_analog.circuit.netlist import MAX_TIME_POINTS, SpiceOptions
from dfc_analog.data import load_dataset
from dfc_analog.errors import ConfigError, DFCError, StepLimitError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.learning.targets import output_target
from dfc_analog.learning.updates import trajectory_update, update_angle
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel, ReadNoisePath
from dfc_analog.model.network import DFCNetwork
from dfc_analog.model.trajectory import Trajectory
from dfc_analog.parallel import run_tasks
from dfc_analog.runio import load_run
from dfc_analog.solvers.wake import (HARDWARE_SOLVERS, SolverSettings, simulate_hardware_wake,
                                     simulate_wake)

PHASES = ("wake", "feedforward")
EMULATION_SOLVERS = ("auto",) + HARDWARE_SOLVERS
CIRCUIT_NOISE = ("pwl", "trnoise")
SPLITS = ("train", "val", "test")
MAX_ANGLE_DEG = 1.0
REFERENCE_TIGHTENING = 1e-3     # reference tolerance = this × the simulator's reltol (or F)
REFERENCE_TOL_FLOOR = 1e-13     # float64 resolution of the departure
REFERENCE_EXPLICIT_STEPS = 20_000   # dopri5 steps before the reference counts as stiff
REFERENCE_MAX_STEPS = 10_000_000
CONTROLLER = ("error", "u_int", "u")


@dataclass(frozen=True)
class ValidationSettings:
    """What is simulated and how strictly it is judged (see the module docstring for the rule).
    The circuit runs with ``spice`` (ngspice's tolerances, integration method, step cap) at
    ``scaling`` (seconds per τ_u, volts per unit, resistance level)."""

    phase: str = "wake"
    points: int = 401           # time points of the common grid over [0, t_end]
    t_end: float | None = None  # τ_u; None: the run's t_end
    safety: float = 10.0        # k of the tolerance rule
    spice: SpiceOptions = field(default_factory=SpiceOptions)
    scaling: Scaling = field(default_factory=Scaling)
    hardware: str | None = None  # preset name or TOML file: circuit and emulation on hardware
    hardware_seed: int = 0       # seed of the realisation's named stream
    emulation_solver: str = "auto"   # 'auto': dopri5, rosenbrock where that is stiff
    noise_seeds: int = 8         # noise realisations per simulator for the read-noise check
    noise_samples: int = 1       # samples the read-noise check runs on (the first ones)
    noise_confidence: float = 0.99   # of the two-sided F bounds of the variance ratio
    circuit_noise: str = "pwl"   # the circuit's read noise: 'pwl' (seeded samples) or 'trnoise'

    def hardware_spec(self):
        """The :class:`HardwareSpec` to validate on, or None for the ideal circuit (no
        ``hardware``, or a spec that is ideal: then nothing differs from today's check)."""
        if self.hardware is None:
            return None
        spec = load_spec(self.hardware)
        return None if spec.is_ideal else spec

    def realise(self, net: DFCNetwork):
        """The realisation of ``net`` on the hardware (the same draws in every process)."""
        return realise_network(net, self.hardware_spec(), self.hardware_seed,
                               self.scaling.v_scale, self.scaling.resistance)

    @property
    def reltol(self) -> float:
        return self.spice.reltol

    def check(self) -> None:
        if self.phase not in PHASES:
            raise ConfigError(f"unknown phase '{self.phase}': choose one of {', '.join(PHASES)}.")
        if self.emulation_solver not in EMULATION_SOLVERS:
            raise ConfigError(f"unknown emulation solver '{self.emulation_solver}': choose one "
                              f"of {', '.join(EMULATION_SOLVERS)}.")
        if not (math.isfinite(self.safety) and self.safety > 0):
            raise ConfigError(f"safety must be a positive number, got {self.safety}.")
        if self.reltol >= 1:
            raise ConfigError(f"reltol must be below 1, got {self.reltol}.")
        if not 2 <= self.points <= MAX_TIME_POINTS:
            raise ConfigError(f"points must be between 2 and the limit of {MAX_TIME_POINTS}, "
                              f"got {self.points}.")
        if self.t_end is not None and not (math.isfinite(self.t_end) and self.t_end > 0):
            raise ConfigError(f"t_end must be a positive number, got {self.t_end}.")
        if isinstance(self.noise_seeds, bool) or not isinstance(self.noise_seeds, int) or \
                self.noise_seeds < 2:
            raise ConfigError(f"noise_seeds must be a whole number ≥ 2 (a variance needs two "
                              f"realisations), got {self.noise_seeds!r}.")
        if isinstance(self.noise_samples, bool) or not isinstance(self.noise_samples, int) or \
                self.noise_samples < 1:
            raise ConfigError(f"noise_samples must be a whole number ≥ 1, got "
                              f"{self.noise_samples!r}.")
        if self.circuit_noise not in CIRCUIT_NOISE:
            raise ConfigError(f"unknown circuit noise '{self.circuit_noise}': choose one of "
                              f"{', '.join(CIRCUIT_NOISE)}.")
        if not 0 < self.noise_confidence < 1:
            raise ConfigError(f"noise_confidence must lie strictly between 0 and 1, got "
                              f"{self.noise_confidence!r}.")
        self.hardware_spec()

    @property
    def floor(self) -> float:
        """The simulator's absolute resolution in model units: (vntol + abstol·R) / v_scale,
        its voltage tolerance plus the voltage its current tolerance makes across R."""
        spice, scaling = self.spice, self.scaling
        return (spice.vntol + spice.abstol * scaling.resistance) / scaling.v_scale

    @property
    def reference_tol(self) -> float:
        """rtol = atol of the ODE reference. Its state is the departure in units of the nudge
        max|δ_L| (wake): 1e-3 · reltol; in the feed-forward phase the nudge is zero and the unit
        is one model unit: 1e-3 · F."""
        scale = self.reltol if self.phase == "wake" else self.floor
        return max(REFERENCE_TIGHTENING * scale, REFERENCE_TOL_FLOOR)

    @property
    def emulation_tol(self) -> float:
        """rtol = atol of the hardware emulation, whose state is in model units: 1e-3 · F."""
        return max(REFERENCE_TIGHTENING * self.floor, REFERENCE_TOL_FLOOR)

    def tolerance(self, peak: float, signal_range: float) -> float:
        """The rule: k (reltol · peak + floor) / range."""
        return self.safety * (self.reltol * peak + self.floor) / signal_range

    def rule(self) -> str:
        if self.hardware_spec() is not None:
            solver = {"auto": f"dopri5 (rosenbrock with the circuit's exact Jacobian where "
                              f"its op-amp poles make it stiff for more than "
                              f"{REFERENCE_EXPLICIT_STEPS} dopri5 steps)"}.get(
                self.emulation_solver, self.emulation_solver)
            return self._rule() + (f" On hardware the model is the emulation of the same "
                                   f"realisation, {solver} at rtol = atol = "
                                   f"{self.emulation_tol:g} (1e-3·F, its state in model units).")
        return self._rule()

    def _rule(self) -> str:
        return (f"tol = k·(reltol·P + F)/R with k = {self.safety:g}, reltol = {self.reltol:g}, "
                f"F = (vntol + abstol·R_circuit)/v_scale = {self.floor:.3g} (the simulator's "
                f"absolute resolution in model units); P = largest |reference| of the group; "
                f"R = max(max − min of the reference over time and neurons, F); departures "
                f"v_i(t) − v_i(0) use the P of the soma itself and their own R; update angle "
                f"≤ min({MAX_ANGLE_DEG:g}°, largest soma-departure tol in rad); ODE reference: "
                f"dopri5 (rosenbrock where stiff dynamics need more than "
                f"{REFERENCE_EXPLICIT_STEPS} dopri5 steps) at rtol = atol = "
                f"{self.reference_tol:g} (= 1e-3·reltol relative to the "
                f"nudge max|δ_L| in the wake phase, 1e-3·F in model units in the feed-forward "
                f"phase), float64.")


# ------------------------------------------------------------------------------------------
# Comparison of two trajectories


@dataclass
class GroupError:
    """Errors of one signal group, normalised by the reference's range R."""

    max: float
    rms: float
    steady: float
    range: float
    peak: float
    tol: float
    neuron: int           # index (within the group) of the largest error
    t_worst: float        # time (τ_u) of the largest error
    t_exceed: float | None  # first time the error exceeds tol (None: never)
    floored: bool = False   # the reference does not vary beyond F: R = F (e.g. u at rest)

    @property
    def passed(self) -> bool:
        return self.max <= self.tol


def signal_groups(traj: Trajectory) -> dict:
    """Signal groups of a trajectory in data-flow order, each a (T, B·n) float64 numpy array:
    basal_i, soma_i, rate_i for i = 1..L, then error, u_int, u, and apical_1..L."""
    def flat(a):
        a = a.detach().cpu().double().numpy()
        return a.reshape(a.shape[0], -1)

    groups = {}
    for i in range(len(traj.soma)):
        for name in ("basal", "soma", "rate"):
            groups[f"{name}{i + 1}"] = flat(getattr(traj, name)[i])
    for name in CONTROLLER:
        groups[name] = flat(getattr(traj, name))
    for i, a in enumerate(traj.apical):
        groups[f"apical{i + 1}"] = flat(a)
    return groups


def group_error(reference: np.ndarray, circuit: np.ndarray, t: np.ndarray, peak: float,
                settings: ValidationSettings) -> GroupError:
    """Errors of one group, normalised by the range of ``reference`` (module docstring)."""
    if circuit.shape != reference.shape:
        raise DFCError(f"the circuit returned a signal of shape {circuit.shape} where the model "
                       f"has {reference.shape}.")
    spread = float(reference.max() - reference.min()) if reference.size else 0.0
    signal_range = max(spread, settings.floor)
    tol = settings.tolerance(peak, signal_range)
    diff = np.abs(circuit - reference) / signal_range
    if not np.all(np.isfinite(diff)):
        diff = np.where(np.isfinite(diff), diff, np.inf)
    per_time = diff.max(axis=1)
    k_t, k_n = np.unravel_index(int(np.argmax(diff)), diff.shape)
    over = np.nonzero(per_time > tol)[0]
    return GroupError(max=float(diff[k_t, k_n]), rms=float(np.sqrt(np.mean(diff ** 2))),
                      steady=float(per_time[-1]), range=signal_range, peak=peak, tol=tol,
                      neuron=int(k_n), t_worst=float(t[k_t]),
                      t_exceed=float(t[over[0]]) if over.size else None,
                      floored=spread <= settings.floor)


def compare(reference: Trajectory, circuit: Trajectory, settings: ValidationSettings):
    """(signal-group errors, soma-departure errors), dicts of :class:`GroupError` in data-flow
    order. Both trajectories must lie on the same time grid."""
    t = reference.t.detach().cpu().double().numpy()
    ref, circ = signal_groups(reference), signal_groups(circuit)
    peaks = {name: float(np.abs(a).max()) for name, a in ref.items()}
    signals = {name: group_error(ref[name], circ[name], t, peaks[name], settings)
               for name in ref}
    departures = {}
    if settings.phase == "wake":
        for name in ref:
            if name.startswith("soma"):
                departures[f"{name} departure"] = group_error(
                    ref[name] - ref[name][:1], circ[name] - circ[name][:1], t, peaks[name],
                    settings)
    return signals, departures


def varying_groups(signals: dict) -> dict:
    """The signal groups of :func:`compare` that vary beyond the simulator's resolution F (all
    if none do): the headline error; a constant-zero group is judged by its tolerance alone."""
    return {n: e for n, e in signals.items() if not e.floored} or signals


def largest_error(signals: dict) -> tuple:
    """(name, :class:`GroupError`) of the largest normalised error of :func:`varying_groups`."""
    varying = varying_groups(signals)
    name = max(varying, key=lambda n: varying[n].max)
    return name, varying[name]


def first_divergence(errors: dict):
    """The signal that left its tolerance first: earliest time, then earliest in data-flow
    order (so a wrong weight in layer i names basal_i, not everything downstream of it).
    Returns (name, GroupError) or None."""
    failing = [(e.t_exceed, k, name) for k, (name, e) in enumerate(errors.items())
               if e.t_exceed is not None]
    if not failing:
        return None
    _, _, name = min(failing)
    return name, errors[name]


# ------------------------------------------------------------------------------------------
# One sample


@dataclass
class SampleResult:
    """Everything the report needs about one validated sample."""

    index: int
    signals: dict
    departures: dict
    angle_deg: float | None
    angle_tol_deg: float | None
    update_rel_error: float | None
    class_reference: int | None
    class_circuit: int | None
    seconds_circuit: float
    seconds_reference: float
    reference: dict = field(repr=False)   # Trajectory.numpy() of the ODE reference
    circuit: dict = field(repr=False)     # Trajectory.numpy() of the circuit
    reference_solver: str = "dopri5"      # 'rosenbrock' where the dynamics were stiff
    hardware_effect: dict | None = None   # on hardware: the emulation against the ideal model
    ideal: dict | None = field(default=None, repr=False)   # Trajectory.numpy() of that model

    @property
    def failures(self) -> list:
        """One line per failed check, worst first."""
        lines = []
        for name, e in {**self.signals, **self.departures}.items():
            if not e.passed:
                lines.append((e.max / e.tol, f"{name}: max error {e.max:.3g} > tol {e.tol:.3g} "
                                             f"(neuron {e.neuron}, t = {e.t_worst:.4g} τ_u)"))
        if self.angle_deg is not None and self.angle_deg > self.angle_tol_deg:
            lines.append((self.angle_deg / self.angle_tol_deg,
                          f"eq. (5) update: angle {self.angle_deg:.3g}° > "
                          f"{self.angle_tol_deg:.3g}°"))
        if self.class_reference is not None and self.class_reference != self.class_circuit:
            lines.append((math.inf, f"predicted class {self.class_circuit} ≠ model's "
                                    f"{self.class_reference}"))
        return [text for _, text in sorted(lines, key=lambda p: -p[0])]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def diverged(self):
        """(signal name, GroupError) that left its tolerance first, or None."""
        return first_divergence({**self.signals, **self.departures})

    @property
    def max_error(self) -> float:
        """Largest normalised error over the signal groups that vary."""
        return largest_error(self.signals)[1].max

    @property
    def worst_signal(self) -> str:
        return largest_error(self.signals)[0]


def spice_circuit(net, params, x, r_star, t_end, times, settings: ValidationSettings):
    """The circuit side: the SPICE simulation of :mod:`dfc_analog.circuit` at ``settings``'
    tolerances and scaling. Any callable with this signature can stand in for it."""
    from dfc_analog.circuit.simulate import simulate_circuit
    return simulate_circuit(net, params, x, r_star, t_end, times, scaling=settings.scaling,
                            options=settings.spice)


def spice_hardware_circuit(real, params, x, r_star, t_end, times, settings: ValidationSettings,
                           read_noise=None):
    """The circuit side on hardware: the crossbar netlist of the realisation ``real``
    (:mod:`dfc_analog.circuit.crossbar`) in ngspice; ``read_noise``: the unit samples of its
    read-noise process as PWL sources (None: TRNOISE, or no process). Any callable with this
    signature can stand in for it."""
    from dfc_analog.circuit.simulate import simulate_hardware_circuit
    return simulate_hardware_circuit(real, params, x, r_star, t_end, times,
                                     settings.scaling.time_scale, settings.spice,
                                     read_noise=read_noise)


def emulation_trajectory(model: HardwareModel, x: torch.Tensor, r_star: torch.Tensor | None,
                         t_end: float, times: torch.Tensor, tol: float, solver: str = "auto",
                         note=None, noise=None) -> tuple:
    """(trajectory, solver name) of the hardware emulation (:mod:`dfc_analog.model.hardware`)
    of one sample at rtol = atol = ``tol`` (model units), read at exactly ``times``.
    ``solver`` 'auto' is Dormand–Prince within REFERENCE_EXPLICIT_STEPS steps, else (op-amp
    poles that make the dynamics stiff) the Rosenbrock-W method with the circuit's exact
    Jacobian, as :func:`reference_trajectory` (``note`` is told, with one line); the read-noise
    path ``noise`` (of this sample) takes dopri5."""
    if noise is not None:
        methods = [("dopri5", REFERENCE_MAX_STEPS)]
    elif solver == "auto":
        methods = [("dopri5", REFERENCE_EXPLICIT_STEPS), ("rosenbrock", REFERENCE_MAX_STEPS)]
    else:
        methods = [(solver, REFERENCE_MAX_STEPS)]
    for method, max_steps in methods:
        try:
            traj = simulate_hardware_wake(model, x[None], None if r_star is None else
                                          r_star[None], t_end, times, rtol=tol, atol=tol,
                                          max_steps=max_steps, noise=noise, method=method)
        except StepLimitError:
            if method != "dopri5" or len(methods) == 1:
                raise
            if note is not None:
                note(f"the dopri5 emulation needs more than {max_steps} steps (stiff op-amp "
                     "poles): solving it with rosenbrock")
            continue
        return traj, method


def hardware_effect(ideal: Trajectory, hardware: Trajectory, x: torch.Tensor, net: DFCNetwork,
                    params: ControllerParams, settings: ValidationSettings,
                    classify: bool) -> dict:
    """How far the hardware (emulation) is from the ideal model: per signal group the largest
    |hardware − ideal| normalised by the ideal signal's range, the angle between their eq. (5)
    updates and their predicted classes."""
    signals, _ = compare(ideal, hardware, settings)
    out = {"signals": {name: e.max for name, e in signals.items()},
           "update_angle_deg": None, "class_ideal": None, "class_hardware": None}
    if settings.phase == "wake":
        out["update_angle_deg"] = update_angle(
            trajectory_update(net, ideal, x[None], params.plasticity),
            trajectory_update(net, hardware, x[None], params.plasticity))[0]
    if classify:
        out["class_ideal"] = int(ideal.rate[-1][0, 0].argmax())
        out["class_hardware"] = int(hardware.rate[-1][0, 0].argmax())
    return out


def reference_trajectory(net: DFCNetwork, params: ControllerParams, x: torch.Tensor,
                         r_star: torch.Tensor | None, t_end: float, times: torch.Tensor,
                         tol: float, note=None) -> tuple:
    """(trajectory, solver name) of the ODE of eqs. (1) and (4) from the feed-forward state
    (eq. 2), one sample, float64, at rtol = atol = ``tol``, read at exactly ``times``.

    Dormand–Prince first, within REFERENCE_EXPLICIT_STEPS steps; stiff dynamics (a large k_p
    against τ_v) need more than that for stability alone, and are solved by the Rosenbrock-W
    method at the same tolerance instead (``note`` is told, with one line). ``r_star=None`` is
    the feed-forward phase: the target is the feed-forward output itself, computed by the very
    call the solver starts from, so that the nudge is exactly zero (a nudge of rounding size
    would become the solver's unit, see :mod:`dfc_analog.model.dynamics`)."""
    if r_star is None:
        r_star = net.feedforward(x[None])[1][-1][0]
    for method, max_steps in (("dopri5", REFERENCE_EXPLICIT_STEPS),
                              ("rosenbrock", REFERENCE_MAX_STEPS)):
        solver = SolverSettings(method, rtol=tol, atol=tol, max_steps=max_steps)
        try:
            wake = simulate_wake(net, x[None], r_star[None], params, solver, t_end, times=times)
        except StepLimitError:
            if method != "dopri5":
                raise
            if note is not None:
                note(f"the dopri5 reference needs more than {max_steps} steps (stiff dynamics, "
                     f"k_p = {params.k_p:g}, tau_v = {params.tau_v:g}): solving it with "
                     "rosenbrock")
            continue
        return wake.trajectory.at(times), method


def validate_sample(index: int, net: DFCNetwork, params: ControllerParams, x: torch.Tensor,
                    r_star: torch.Tensor | None, t_end: float, settings: ValidationSettings,
                    classify: bool, circuit=None,
                    r_star_ideal: torch.Tensor | None = None) -> SampleResult:
    """Simulate one sample by the circuit and by the ODE, and compare them.

    ``r_star`` is the eq. (3) target of the wake phase, None in the feed-forward phase (the
    controller stays at rest). On hardware (``settings.hardware``) the circuit is the crossbar
    netlist of the realisation and the reference its emulation (the same draws), ``r_star``
    the target from the hardware's own output, and ``r_star_ideal`` the ideal model's target
    for the comparison with the ideal model. ``circuit`` defaults to :func:`spice_circuit`
    (:func:`spice_hardware_circuit` on hardware).
    """
    times = torch.linspace(0.0, t_end, settings.points, dtype=torch.float64)
    on_hardware = settings.hardware_spec() is not None
    if on_hardware:     # a read-noise process is compared in distribution (check_read_noise)
        real = settings.realise(net).without_read_process()
        model = HardwareModel(real, params, settings.scaling.time_scale)
        circuit = circuit or spice_hardware_circuit
    start = time.perf_counter()
    circ = circuit or spice_circuit
    circ = circ(real if on_hardware else net, params, x, r_star, t_end, times.numpy(), settings)
    seconds_circuit = time.perf_counter() - start
    t = circuit_grid(circ, t_end)
    start = time.perf_counter()
    note = lambda text: print(f"sample {index}: {text}", file=sys.stderr, flush=True)  # noqa
    effect = ideal = None
    if on_hardware:
        ref, reference_solver = emulation_trajectory(model, x, r_star, t_end, t,
                                                     settings.emulation_tol,
                                                     settings.emulation_solver, note)
        ideal_traj, _ = reference_trajectory(
            net, params, x, r_star_ideal, t_end, t, settings.reference_tol, note=note)
        effect = hardware_effect(ideal_traj, ref, x, net, params, settings, classify)
        ideal = ideal_traj.numpy()
    else:
        ref, reference_solver = reference_trajectory(net, params, x, r_star, t_end, t,
                                                     settings.reference_tol, note=note)
    seconds_reference = time.perf_counter() - start
    return judge(index, ref, circ, net, params, x, settings, classify, seconds_circuit,
                 seconds_reference, reference_solver, effect, ideal)


def circuit_grid(circ: Trajectory, t_end: float) -> torch.Tensor:
    """The circuit's time points (float64), checked increasing within [0, t_end]."""
    t = circ.t.detach().cpu().double()
    if t.ndim != 1 or t.numel() < 2 or bool((torch.diff(t) <= 0).any()) or \
            float(t[0]) < 0 or float(t[-1]) > t_end * (1 + 1e-9):
        raise DFCError(f"the circuit returned time points that are not increasing within "
                       f"[0, {t_end}] τ_u.")
    return t


def judge(index: int, ref: Trajectory, circ: Trajectory, net: DFCNetwork,
          params: ControllerParams, x: torch.Tensor, settings: ValidationSettings,
          classify: bool, seconds_circuit: float, seconds_reference: float,
          reference_solver: str, effect=None, ideal=None) -> SampleResult:
    """The sample-for-sample comparison of the circuit's trajectory with the model's (on one
    grid): the signal groups and departures under the tolerance rule, the eq. (5) update
    angle, the predicted class."""
    signals, departures = compare(ref, circ, settings)
    angle = angle_tol = rel = None
    if settings.phase == "wake":
        g_ref = trajectory_update(net, ref, x[None], params.plasticity)
        g_circ = trajectory_update(net, circ, x[None], params.plasticity)
        angle, rel = update_angle(g_ref, g_circ)
        dep_tol = max(e.tol for e in departures.values())
        angle_tol = min(MAX_ANGLE_DEG, math.degrees(dep_tol))
    class_ref = class_circ = None
    if classify:
        class_ref = int(ref.rate[-1][0, 0].argmax())
        class_circ = int(circ.rate[-1][0, 0].argmax())
    return SampleResult(index, signals, departures, angle, angle_tol, rel, class_ref, class_circ,
                        seconds_circuit, seconds_reference, ref.numpy(), circ.numpy(),
                        reference_solver, effect, ideal)


# ------------------------------------------------------------------------------------------
# A run


@dataclass
class RunValidation:
    """The outcome for a run: settings, the samples' results (in sample order) and the run."""

    run_dir: str
    settings: ValidationSettings
    t_end: float
    layer_sizes: list
    results: list
    classify: bool
    seconds: float
    split: str = "test"
    noise: list = field(default_factory=list)   # NoiseCheck per sample, on a read-noise process

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results) and all(c.passed for c in self.noise)


def sample_targets(net: DFCNetwork, cfg, x: torch.Tensor, y: torch.Tensor, output=None):
    """r* per sample: eq. (3) as training computes it for a minibatch of one sample, from the
    network's feed-forward output (eq. 2) or from ``output`` (B, n_L), the hardware's."""
    r_L = net.feedforward(x)[1][-1] if output is None else output
    targets = [output_target(r_L[k:k + 1], y[k:k + 1], cfg.loss, cfg.loss_reduction,
                             cfg.target_stepsize)[0] for k in range(x.shape[0])]
    return torch.cat(targets)


@dataclass
class SampleSet:
    """The samples of a run to validate, with everything the two simulators need."""

    run_dir: str
    layer_sizes: list
    net: DFCNetwork
    params: ControllerParams
    x: torch.Tensor           # (N, n_0)
    r_star: torch.Tensor | None   # (N, n_L) eq. (3) targets; None in the feed-forward phase
    t_end: float
    classify: bool
    indices: list = None      # the samples' indices in their split (default 0..N-1)
    split: str = "test"
    r_star_ideal: torch.Tensor | None = None   # on hardware: the ideal model's targets

    def __post_init__(self):
        if self.indices is None:
            self.indices = list(range(self.x.shape[0]))


def load_samples(run_dir, samples, settings: ValidationSettings, split: str = "test",
                 data_dir: str | None = None) -> SampleSet:
    """Samples of a run's ``split`` and their targets, in float64: the first ``samples`` (an
    int), or the samples of the given indices (a list). ``data_dir`` overrides the run's."""
    settings.check()
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}.")
    cfg, net = load_run(run_dir, device="cpu")
    if data_dir is not None:
        cfg = cfg.replace(data_dir=os.path.abspath(data_dir))
    net = net.double()
    data = getattr(load_dataset(cfg), split)
    if isinstance(samples, int):
        if samples < 1 or samples > len(data):
            raise ConfigError(f"samples must be between 1 and the {len(data)} {split} samples "
                              f"of the run, got {samples}.")
        indices = list(range(samples))
    else:
        indices = [int(k) for k in samples]
        wrong = [k for k in indices if not 0 <= k < len(data)]
        if not indices or wrong:
            raise ConfigError(f"sample index {wrong[0] if wrong else '(none)'} is out of range: "
                              f"the {split} split holds {len(data)} samples (0..{len(data) - 1}).")
        if len(set(indices)) != len(indices):
            raise ConfigError(f"sample indices must differ from each other, got {indices}.")
    x, y = data.x[indices].double(), data.y[indices]
    params = ControllerParams.from_config(cfg)
    r_star = r_star_ideal = None
    with torch.no_grad():
        output = None
        if settings.hardware_spec() is not None:     # the chip's own feed-forward output
            model = HardwareModel(settings.realise(net), params, settings.scaling.time_scale)
            output = model.feedforward(x)["rate"][:, -cfg.layer_sizes[-1]:]
        if settings.phase == "wake":
            r_star = sample_targets(net, cfg, x, y, output)
            if output is not None:
                r_star_ideal = sample_targets(net, cfg, x, y)
    t_end = settings.t_end if settings.t_end is not None else cfg.t_end
    return SampleSet(str(run_dir), list(cfg.layer_sizes), net, params, x, r_star, t_end,
                     cfg.loss == "cross_entropy", indices, split, r_star_ideal)


def validate_samples(samples: SampleSet, settings: ValidationSettings, workers: int | None = None,
                     progress: bool = True, circuit=None,
                     threads: int | None = None) -> RunValidation:
    """Validate every sample of ``samples``, in parallel processes (:func:`run_tasks`; default
    one per core, at most one per sample). ngspice, which keeps global state and whose PySpice
    binding leaks memory per run, runs in a fresh process of its own for every simulation
    (:func:`dfc_analog.circuit.simulate_circuit`). ``circuit`` is the circuit simulator
    (:func:`spice_circuit`, or a stand-in with its signature; in parallel runs it must be
    importable by name). ``threads``: torch threads in all (default: the cores available to
    the process), shared equally by the workers.
    """
    settings.check()
    start = time.perf_counter()
    n = samples.x.shape[0]
    jobs = [dict(index=samples.indices[k], net=samples.net, params=samples.params, x=samples.x[k],
                 r_star=None if samples.r_star is None else samples.r_star[k],
                 t_end=samples.t_end, settings=settings, classify=samples.classify,
                 circuit=circuit,
                 r_star_ideal=None if samples.r_star_ideal is None else samples.r_star_ideal[k])
            for k in range(n)]
    from tqdm import tqdm
    results = []
    with tqdm(total=n, desc="validating samples", unit="sample", disable=not progress) as bar:
        for _, result in run_tasks(validate_sample, jobs, workers, threads=threads):
            results.append(result)
            _advance(bar, result)
    results.sort(key=lambda r: r.index)
    noise = []
    if settings.hardware_spec() is not None and settings.hardware_spec().synapse.read_process:
        noise = check_read_noise(samples, settings, workers, threads, circuit)
    return RunValidation(samples.run_dir, settings, samples.t_end, samples.layer_sizes, results,
                         samples.classify, time.perf_counter() - start, samples.split, noise)


def _advance(bar, result: SampleResult) -> None:
    bar.set_postfix_str(f"sample {result.index}: max error {result.max_error:.2g} "
                        f"({'pass' if result.passed else 'FAIL'})")
    bar.update()


# ------------------------------------------------------------------------------------------
# Read noise in distribution


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (continued fraction, modified Lentz;
    Numerical Recipes 6.4)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) +
                     a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    out = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            out *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * out


def f_quantile(q: float, d1: float, d2: float) -> float:
    """The q-quantile of the F(d1, d2) distribution: P(F ≤ f) = I_{d1 f/(d1 f + d2)}(d1/2, d2/2),
    inverted by bisection on the beta variable."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _betainc(d1 / 2, d2 / 2, mid) < q else (lo, mid)
    z = 0.5 * (lo + hi)
    return d2 * z / (d1 * (1.0 - z))


@dataclass
class NoiseCheck:
    """The read-noise distribution check of one sample: total variance over ``seeds`` noise
    realisations, per statistic ('output': r_L(t_end); 'update': the eq. (5) update), in the
    circuit and in the emulation, and the F bounds of their ratio."""

    index: int
    seeds: int
    confidence: float
    circuit: dict
    emulation: dict
    bounds: tuple
    same_path: SampleResult | None = None   # 'pwl': circuit and emulation on one noise path

    def ratio(self, name: str) -> float:
        return self.circuit[name] / self.emulation[name] if self.emulation[name] > 0 else \
            (1.0 if self.circuit[name] == 0 else math.inf)

    @property
    def variance_passed(self) -> bool:
        return all(self.bounds[0] <= self.ratio(n) <= self.bounds[1] for n in self.circuit)

    @property
    def passed(self) -> bool:
        return self.variance_passed and (self.same_path is None or self.same_path.passed)


def total_variance(values: np.ndarray) -> float:
    """Σ over coordinates of the unbiased variance over the first axis (seeds): the trace of the
    sample covariance."""
    return float(np.var(np.asarray(values, dtype=np.float64), axis=0, ddof=1).sum())


def _sample_statistics(net: DFCNetwork, traj: Trajectory, x: torch.Tensor,
                       params: ControllerParams, phase: str) -> dict:
    """The statistics the check compares, per batch row b of ``traj`` (rows of ``x``): the
    settled output rates r_L(t_end) and, in the wake phase, the eq. (5) update."""
    out = {"output": traj.rate[-1][-1].detach().cpu().double().numpy()}
    if phase == "wake":
        rows = []
        for b in range(x.shape[0]):
            row = Trajectory(t=traj.t, soma=[a[:, b:b + 1] for a in traj.soma],
                             basal=[a[:, b:b + 1] for a in traj.basal],
                             apical=[a[:, b:b + 1] for a in traj.apical],
                             rate=[a[:, b:b + 1] for a in traj.rate], u=traj.u[:, b:b + 1],
                             u_int=traj.u_int[:, b:b + 1], error=traj.error[:, b:b + 1])
            update = trajectory_update(net, row, x[b:b + 1], params.plasticity)
            rows.append(torch.cat([g.reshape(-1) for g in update]).cpu().numpy())
        out["update"] = np.stack(rows)
    return out


def circuit_noise_run(net, params, x, r_star, t_end, times, settings: ValidationSettings,
                      circuit=None, read_noise=None, trajectory: bool = False) -> dict:
    """One noise realisation of the crossbar circuit for one sample: its statistics
    (:func:`_sample_statistics`, one row), and with ``trajectory`` the circuit's
    :class:`Trajectory` itself and its wall seconds (keys ``'trajectory'``, ``'seconds'``).
    ``read_noise``: the unit samples (K+1, N) of the PWL sources, or None for TRNOISE."""
    start = time.perf_counter()
    real = settings.realise(net)
    kwargs = {} if read_noise is None else {"read_noise": read_noise}
    traj = (circuit or spice_hardware_circuit)(real, params, x, r_star, t_end, times, settings,
                                               **kwargs)
    out = {k: v[0] for k, v in _sample_statistics(net, traj, x[None], params,
                                                  settings.phase).items()}
    if trajectory:
        out.update(trajectory=traj, seconds=time.perf_counter() - start)
    return out


def check_read_noise(samples: SampleSet, settings: ValidationSettings, workers=None,
                     threads=None, circuit=None) -> list:
    """The checks of the read-noise process (module docstring) on the first
    ``settings.noise_samples`` samples. In distribution: N circuit runs per sample in parallel
    (:func:`run_tasks`), their unit samples drawn from the named stream
    ``circuit_read_noise`` (independent of the emulation's) and written as PWL sources, or
    ngspice's own TRNOISE (``circuit_noise='trnoise'``, not seedable); the N × samples
    emulation runs in one batched solve at rtol = atol = 1e-3 · reltol (its error far below
    the spread of a variance over N seeds). With PWL, sample for sample as well: the circuit
    driven by the emulation's path of noise seed 0 against the emulation of that path (at the
    deterministic check's tolerance, :func:`judge`)."""
    S, M = settings.noise_seeds, min(settings.noise_samples, samples.x.shape[0])
    net, params, t_end = samples.net, samples.params, samples.t_end
    times = torch.linspace(0.0, t_end, settings.points, dtype=torch.float64)
    model = HardwareModel(settings.realise(net), params, settings.scaling.time_scale)
    rows = [(s, k) for s in range(S) for k in range(M)]
    X = torch.stack([samples.x[k] for _, k in rows])
    R = None if samples.r_star is None else torch.stack([samples.r_star[k] for _, k in rows])
    path = model.read_noise_path([s for s, _ in rows], [samples.indices[k] for _, k in rows],
                                 t_end)
    tol = max(REFERENCE_TIGHTENING * settings.reltol, REFERENCE_TOL_FLOOR)
    traj = simulate_hardware_wake(model, X, R, t_end, times, rtol=tol, atol=tol, noise=path)
    emulated = _sample_statistics(net, traj, X, params, settings.phase)
    pwl = settings.circuit_noise == "pwl"

    def job(k, read_noise=None, trajectory=False):
        return dict(net=net, params=params, x=samples.x[k],
                    r_star=None if samples.r_star is None else samples.r_star[k], t_end=t_end,
                    times=times.numpy(), settings=settings, circuit=circuit,
                    read_noise=read_noise, trajectory=trajectory)

    own = model.read_noise_path([s for s, _ in rows], [samples.indices[k] for _, k in rows],
                                t_end, stream="circuit_read_noise") if pwl else None
    jobs = [job(k, None if own is None else own.xi[:, n].cpu().numpy())
            for n, (_, k) in enumerate(rows)]
    if pwl:     # rows 0..M-1 are noise seed 0 of each sample: the emulation's path
        jobs += [job(k, path.xi[:, k].cpu().numpy(), True) for k in range(M)]
    circuits = [None] * len(jobs)
    for n, result in run_tasks(circuit_noise_run, jobs, workers, threads=threads):
        circuits[n] = result
    c = settings.noise_confidence
    bounds = (f_quantile((1 - c) / 2, S - 1, S - 1), f_quantile((1 + c) / 2, S - 1, S - 1))
    checks = []
    for k in range(M):
        mine = [n for n, (_, kk) in enumerate(rows) if kk == k]
        same = same_path(samples, k, model, path, circuits[len(rows) + k], settings) \
            if pwl else None
        checks.append(NoiseCheck(
            samples.indices[k], S, c,
            {name: total_variance(np.stack([circuits[n][name] for n in mine]))
             for name in emulated},
            {name: total_variance(emulated[name][mine]) for name in emulated}, bounds, same))
    return checks


def same_path(samples: SampleSet, k: int, model: HardwareModel, path, run: dict,
              settings: ValidationSettings) -> SampleResult:
    """Sample ``k`` of ``samples`` with the read-noise path of batch row ``k`` of ``path``:
    the circuit's trajectory (``run``, of :func:`circuit_noise_run`) against the emulation of
    that path on the circuit's grid, judged as the deterministic check (:func:`judge`)."""
    circ = run["trajectory"]
    t = circuit_grid(circ, samples.t_end)
    start = time.perf_counter()
    r_star = None if samples.r_star is None else samples.r_star[k]
    ref, solver = emulation_trajectory(model, samples.x[k], r_star, samples.t_end, t,
                                       settings.emulation_tol, settings.emulation_solver,
                                       noise=ReadNoisePath(path.xi[:, k:k + 1], path.dt))
    return judge(samples.indices[k], ref, circ, samples.net, samples.params, samples.x[k],
                 settings, samples.classify, run["seconds"], time.perf_counter() - start,
                 solver)
