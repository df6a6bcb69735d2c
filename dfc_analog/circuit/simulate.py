"""Run a netlist in ngspice and map the result back through the component graph to the
:class:`~dfc_analog.model.Trajectory` the ODE solver returns.

Each run goes by default to a fresh worker process (:mod:`.ngspice_worker`, which imports only
numpy and PySpice and handles PySpice 1.5's quirks on ngspice ≥ 35), so PySpice's per-run
memory leak and ngspice's global state never reach the caller, and callers may run several
simulations in parallel processes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import DFCError
from dfc_analog.circuit.graph import Scaling, build_graph, controller_name, neuron_name
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import Trajectory
from dfc_analog.circuit import ngspice_worker
from dfc_analog.circuit.netlist import SpiceOptions, saved_nodes, write_netlist


class NgspiceError(DFCError):
    """ngspice is missing, rejected the netlist or did not converge."""


def run_netlist(netlist: str, vectors: list, isolate: bool = True) -> dict:
    """Run ``netlist`` in ngspice and return the named node vectors (and ``time`` for a
    transient) as float64 arrays. ``isolate`` runs it in a fresh worker process; otherwise in
    this process's ngspice (faster to start; leaks ~13 MiB per transient)."""
    try:
        if not isolate:
            return ngspice_worker.run(netlist, vectors)
        ngspice_worker.library_path()   # say that ngspice is missing before starting a worker
    except ngspice_worker.SimulatorFailure as exc:
        raise NgspiceError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="dfc-ngspice-") as tmp:
        tmp = Path(tmp)
        (tmp / "netlist.cir").write_text(netlist)
        (tmp / "vectors.json").write_text(json.dumps(list(vectors)))
        proc = subprocess.run([sys.executable, ngspice_worker.__file__, str(tmp / "netlist.cir"),
                               str(tmp / "vectors.json"), str(tmp / "out.npz")],
                              capture_output=True, text=True)
        if proc.returncode == ngspice_worker.FAILED:
            raise NgspiceError(proc.stderr.strip().splitlines()[-1])
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise NgspiceError(f"the ngspice worker process failed (exit status "
                               f"{proc.returncode}: {last}).")
        with np.load(tmp / "out.npz") as data:
            return {k: data[k] for k in data.files}


def _sample(data: dict, names: list, t_sim: np.ndarray, t_query: np.ndarray) -> np.ndarray:
    """(len(names), T) values at ``t_query``; the netlist puts breakpoints on these times, so
    the linear weights are 0 or 1 up to rounding."""
    values = np.stack([data[n] for n in names])
    if t_sim is None:
        return values[:, :1]
    idx = np.clip(np.searchsorted(t_sim, t_query, side="right") - 1, 0, len(t_sim) - 2)
    span = t_sim[idx + 1] - t_sim[idx]
    w = np.clip((t_query - t_sim[idx]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return values[:, idx] * (1.0 - w) + values[:, idx + 1] * w


def trajectory_from_vectors(sizes: list, data: dict, scaling: Scaling, t_query: np.ndarray,
                            t_on: float) -> Trajectory:
    """Map the simulator's node vectors back to a batch-of-one :class:`Trajectory` in model units
    (volts / v_scale; time in τ_u from the switch-on at ``t_on`` seconds)."""
    L, n_L = len(sizes) - 1, sizes[-1]
    t_sim = None if "time" not in data else (data["time"] - t_on) / scaling.time_scale

    def signal(names):
        values = _sample(data, names, t_sim, t_query) / scaling.v_scale
        return torch.from_numpy(values.T.copy()).unsqueeze(1)        # (T, 1, n)

    per_layer = {c: [signal([neuron_name(i, c, k) for k in range(sizes[i])])
                     for i in range(1, L + 1)] for c in ("soma", "basal", "apical", "rate")}
    ctl = {s: signal([controller_name(s, m) for m in range(n_L)]) for s in ("u", "int", "error")}
    return Trajectory(t=torch.from_numpy(np.asarray(t_query, dtype=np.float64).copy()),
                      soma=per_layer["soma"], basal=per_layer["basal"],
                      apical=per_layer["apical"], rate=per_layer["rate"],
                      u=ctl["u"], u_int=ctl["int"], error=ctl["error"])


def simulate_circuit(net: DFCNetwork, params: ControllerParams, x, r_star, t_end: float, times,
                     scaling: Scaling | None = None, options: SpiceOptions | None = None,
                     settle: float = 1.0) -> Trajectory:
    """Simulate the exported circuit of ``net`` for one input ``x`` (n_0,).

    The transient starts at the circuit's DC operating point with the controller off, i.e. the
    feed-forward equilibrium of eq. (2) with e = u = u_int = 0, settles for ``settle`` τ_u, and
    at t = 0 switches the controller of eq. (4) on, with target ``r_star`` (n_L,) of eq. (3);
    ``r_star=None`` keeps the controller off throughout. ``times`` (τ_u, increasing, in
    [0, t_end]) is the returned grid. The result is the :class:`Trajectory`
    :func:`dfc_analog.solvers.simulate_wake` gives for a batch of one (float64, model units), so
    the two compare directly. Raises :class:`NgspiceError` when ngspice is missing or fails.
    """
    scaling = scaling or Scaling()
    options = options or SpiceOptions()
    times = np.asarray(times.detach().cpu() if hasattr(times, "detach") else times,
                       dtype=np.float64).reshape(-1)
    g = build_graph(net, params, scaling, x, r_star)
    phase = "feedforward" if r_star is None else "wake"
    text = write_netlist(g, phase, t_end, times, settle, options)
    data = run_netlist(text, saved_nodes(g), options.isolate)
    return trajectory_from_vectors(net.layer_sizes, data, scaling, times,
                                   settle * scaling.time_scale)


def operating_point(net: DFCNetwork, params: ControllerParams, x,
                    scaling: Scaling | None = None,
                    options: SpiceOptions | None = None) -> Trajectory:
    """The circuit's DC operating point with the controller off (``.op``): the feed-forward
    equilibrium of eq. (2), as a one-time-point :class:`Trajectory` (t = [0])."""
    scaling = scaling or Scaling()
    options = options or SpiceOptions()
    g = build_graph(net, params, scaling, x, None)
    data = run_netlist(write_netlist(g, "op", options=options), saved_nodes(g), options.isolate)
    return trajectory_from_vectors(net.layer_sizes, data, scaling, np.zeros(1), 0.0)


def simulate_hardware_circuit(real, params: ControllerParams, x, r_star, t_end: float, times,
                              time_scale: float = 1e-6, options: SpiceOptions | None = None,
                              settle: float = 1.0, read_noise=None) -> Trajectory:
    """:func:`simulate_circuit` for the crossbar netlist of a hardware realisation
    (:mod:`dfc_analog.circuit.crossbar`): the same phases and grid, the compartments read off
    the column sense currents (:func:`hardware_trajectory`). ``read_noise``: the unit samples of
    a read-noise process (PWL sources) or None (TRNOISE)."""
    from dfc_analog.circuit.crossbar import saved_vectors, write_crossbar_netlist
    options = options or SpiceOptions()
    times = _numpy(times).reshape(-1)
    phase = "feedforward" if r_star is None else "wake"
    text = write_crossbar_netlist(real, params, _numpy(x), _numpy(r_star), phase, t_end, times,
                                  settle, options, time_scale, _numpy(read_noise))
    data = run_netlist(text, saved_vectors(real), options.isolate)
    return hardware_trajectory(real, data, times, time_scale, settle)


def _numpy(v):
    """A tensor or array as a float64 numpy array (None stays None)."""
    return None if v is None else np.asarray(v.detach().cpu() if hasattr(v, "detach") else v,
                                             dtype=np.float64)


def hardware_trajectory(real, data: dict, times, time_scale: float, settle: float) -> Trajectory:
    """The crossbar netlist's vectors ``data`` as the :class:`Trajectory` on ``times`` (τ_u from
    the switch-on at ``settle`` τ_u): the compartments read off the column sense currents,
    v_B = −R_f Σ_tiles I_W / v_scale and v_A likewise with I_Q, and u_int off the inverting
    integrator's output −u_int."""
    from dfc_analog.circuit.crossbar import sense_names
    data = dict(data)
    for (kind, i, k), tiles in sense_names(real).items():
        R_f = float(real.layers[i - 1].R_f[k])
        data[neuron_name(i, "basal" if kind == "W" else "apical", k)] = \
            -R_f * sum(data[f"{v}#branch"] for v in tiles)
    for m in range(real.layer_sizes[-1]):
        data[controller_name("int", m)] = -data[controller_name("int", m)]
    scaling = Scaling(time_scale=time_scale, v_scale=real.v_scale, resistance=real.resistance)
    return trajectory_from_vectors(real.layer_sizes, data, scaling, times,
                                   settle * time_scale)


def simulate_inference_by_layers(real, params: ControllerParams, x, t_end: float, times,
                                 time_scale: float = 1e-6, options: SpiceOptions | None = None,
                                 settle: float = 1.0, progress: bool = False) -> tuple:
    """The inference phase of the crossbar netlist (at rest on a zero input until t = 0, then
    the input ``x`` (n_0,) steps on; controller off) in one ngspice run per layer.

    Run k holds layer k and the controller (``write_crossbar_netlist(..., layers=[k])``); its
    rows r and −r of layer k−1 are driven by run k−1's waveforms. The op-amps' outputs are ideal
    sources, so this is the whole circuit's inference to the linear interpolation between run
    k−1's time points, without the fill-in that the chain of layers makes in one circuit matrix
    (README, "Layer by layer"): hours become minutes on 784-256-256-256-10. The wake phase
    cannot be cut so, since the controller closes a loop through every layer. ``progress``: a
    bar over the layers.

    Returns (the :class:`Trajectory` on ``times`` (τ_u), each vector read from the run of its
    layer and the controller's from the last; the runs' vectors, one dict per layer,
    :func:`~dfc_analog.circuit.crossbar.saved_vectors` of ``[k]``)."""
    from tqdm import tqdm

    from dfc_analog.circuit.crossbar import saved_vectors, write_crossbar_netlist
    options = options or SpiceOptions()
    times = _numpy(times).reshape(-1)
    x = _numpy(x).reshape(-1)
    sizes, runs = real.layer_sizes, []
    for k in tqdm(range(1, len(sizes)), desc="ngspice, layer by layer", unit="layer",
                  disable=not progress):
        drivers = None
        if k > 1:
            prev = runs[-1]
            keep = np.diff(prev["time"], prepend=-np.inf) > 0
            drivers = {k - 1: (prev["time"][keep], *(
                np.stack([prev[neuron_name(k - 1, c, j)][keep] for j in range(sizes[k - 1])], 1)
                for c in ("rate", "raten")))}
        text = write_crossbar_netlist(real, params, x, None, "inference", t_end, times, settle,
                                      options, time_scale, layers=[k], drivers=drivers)
        runs.append(run_netlist(text, saved_vectors(real, [k]), options.isolate))
    grid = settle * time_scale + times * time_scale
    merged = {"time": grid}
    for k, run in enumerate(runs, start=1):
        names = [n for n in saved_vectors(real, [k]) if n != "time" and
                 (k == len(runs) or not n.startswith(("ctl_", "xctl_", "vdd", "vss")))]
        merged.update(zip(names, _sample(run, names, run["time"], grid)))
    return hardware_trajectory(real, merged, times, time_scale, settle), runs
