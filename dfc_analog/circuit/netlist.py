"""Component graph → ngspice netlist text (standalone SPICE: ``ngspice -b FILE`` runs it).

Realisation of the graph (:mod:`dfc_analog.circuit.graph`), all elements ideal:

    synapse w (forward W_i, feedback Q_i)   G element (VCCS) of gain w / R into the summing node;
                                            one per synapse: B-source sums are 4-12x slower.
                                            Layer-1 synapses on a constant input: I element
                                            w x_j v_scale / R (see graph.build_graph), by
                                            default summed into one source per neuron
    basal / apical node                     R to ground, so V = Σ_j w_j V_j (+ b v_scale)
    bias b                                  I source b v_scale / R into the basal node
    soma, eq. (1)                           subcircuit dfc_neuron_<φ>: R_v ‖ C_v fed by two
                                            VCCS of gain 1/R_v from basal and apical, and the
                                            rate r = φ(v) as a B-source (an E element if linear)
    controller, eq. (4)                     subcircuit dfc_controller per output: error B-source
                                            e = enable (r* - r_L), integrator C_u fed by a VCCS
                                            1/R with leak α (R/α, or a VCCS α/R from u for
                                            leak 'total'), proportional E element k_p, sum u
                                            as a VCVS in series

A wake-phase experiment has two phases: the transient starts at the DC operating point with the
controller switch ``ctl_enable`` at 0 (the feed-forward equilibrium of eq. (2), e = u = u_int = 0)
and lets the network settle for ``settle`` τ_u; at t_on = settle the switch steps to 1 (a PWL
edge of 1e-9 τ_u that ends exactly at t_on) and the controller drives the output to r* of
eq. (3). The PWL corners also sit at every output time, so the simulator lands on them exactly
instead of interpolating. The sleep phase (a graph of
:func:`~dfc_analog.circuit.graph.sleep_graph`) switches on in the same way, with the target
r* = r_L^- held by the circuit and the noise currents of eq. (12) starting at t_on
(:func:`sleep_lines`); the single phase (a graph of
:func:`~dfc_analog.circuit.graph.single_phase_graph`) is the wake phase with the circuit's own
target and, from t_on, the same noise and the integrators of eqs. (5) and (13)
(:func:`single_phase_lines`). Synapses that carry no current (weight or constant input exactly 0)
are not written.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import networkx as nx
import numpy as np

from dfc_analog.errors import ConfigError
from dfc_analog.circuit.graph import controller_name, input_name, neuron_name
from dfc_analog.version import __version__

PHASES = ("op", "feedforward", "wake", "sleep", "single-phase")
# the phases whose controller switches on at t_on, after the settling period
SWITCHED = ("wake", "sleep", "single-phase")
# The controller switch rises over this fraction of a τ_u, ending exactly at t_on.
SWITCH_RISE = 1e-9
MAX_TIME_POINTS = 1_000_000     # output times of a transient
# The header's version line: comparisons of netlists across releases skip it.
VERSION_LINE = re.compile(r"^\* dfc_analog \S+\n", re.MULTILINE)


def without_version(text: str) -> str:
    """Netlist text without its ``* dfc_analog <version>`` line."""
    return VERSION_LINE.sub("", text, count=1)


@dataclass(frozen=True)
class SpiceOptions:
    """Simulator settings. ``reltol``, ``abstol`` (A) and ``vntol`` (V) are ngspice's own, with
    its defaults. ``chgtol`` (C; ``None``: ngspice's 1e-14 scaled by reltol / 1e-3) bounds the
    capacitor charge error. ``trtol`` is the factor by which ngspice lets the local truncation
    error exceed reltol: 0.25 here (ngspice's 7 leaves 3-8x the error after the switch-on); the
    worst error relative to a signal's range is then ~0.5 reltol at reltol 1e-3 and 3-12 reltol
    at 1e-6 (measured on 1-1, 15-10-10-5 and 50-40-40-10 nets). ``max_step`` (τ_u; ``None``:
    100 √reltol τ_v) caps the step the local error control picks (ngspice caps it at the output
    step as well): the integrator's error grows as the square of that cap and stays below reltol
    with it; at reltol 1e-3 the worst error is the same as with a 10x smaller cap, at 45 % of the
    time points on a 784-256-256-256-10 net. ``method`` is ``trap`` or ``gear``. ``sum_inputs`` writes the
    layer-1 synapses on a constant input as one summed current source per neuron (exact: the
    currents are constant; 200,704 sources of the 784-input net made 40 % of ngspice's load
    time) instead of one source per synapse. ``isolate`` runs ngspice in a fresh worker process
    (PySpice leaks ~13 MiB per run and ngspice keeps global state). ``every_synapse`` writes the
    synapses of weight 0 too, so that a loaded circuit can ``alter`` every weight (training with
    SPICE in the loop, :mod:`dfc_analog.circuit.learning`)."""

    reltol: float = 1e-3
    abstol: float = 1e-12
    vntol: float = 1e-6
    chgtol: float | None = None
    max_step: float | None = None
    method: str = "trap"
    trtol: float = 0.25
    sum_inputs: bool = True
    isolate: bool = True
    every_synapse: bool = False

    def __post_init__(self):
        for name in ("reltol", "abstol", "vntol", "chgtol", "max_step", "trtol"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"SPICE option {name} must be a positive number, got {value}.")
        if self.method not in ("trap", "gear"):
            raise ConfigError(f"SPICE integration method must be 'trap' or 'gear', got "
                              f"'{self.method}'.")

    def charge_tolerance(self) -> float:
        return self.chgtol if self.chgtol is not None else 1e-14 * self.reltol / 1e-3

    def step_limit(self, tau_v: float) -> float:
        """Largest time step in τ_u."""
        return self.max_step if self.max_step is not None else 100.0 * math.sqrt(self.reltol) * tau_v


def add_spice_arguments(parser) -> None:
    """The simulator options of the circuit tools (an argparse parser or group), with
    :class:`SpiceOptions`' defaults; :func:`spice_options` reads them back."""
    parser.add_argument("--reltol", type=float, default=SpiceOptions.reltol,
                        help="ngspice relative tolerance RELTOL (default: 1e-3, ngspice's)")
    parser.add_argument("--abstol", type=float, default=SpiceOptions.abstol,
                        help="ngspice absolute current tolerance ABSTOL in A (default: 1e-12)")
    parser.add_argument("--vntol", type=float, default=SpiceOptions.vntol,
                        help="ngspice absolute voltage tolerance VNTOL in V (default: 1e-6)")
    parser.add_argument("--max-step", type=float, metavar="DT",
                        help="largest time step in τ_u (default: 100·sqrt(reltol)·τ_v; ngspice "
                             "also caps it at the output step)")
    parser.add_argument("--trtol", type=float, default=SpiceOptions.trtol,
                        help="factor by which the local truncation error may exceed reltol "
                             "(default: 0.25; ngspice's own default 7 leaves 3-8x the error)")
    parser.add_argument("--integration", default=SpiceOptions.method, choices=("trap", "gear"),
                        help="ngspice integration method (default: trap)")


def spice_options(args, **extra) -> SpiceOptions:
    """The :class:`SpiceOptions` of the arguments :func:`add_spice_arguments` added."""
    return SpiceOptions(reltol=args.reltol, abstol=args.abstol, vntol=args.vntol,
                        max_step=args.max_step, trtol=args.trtol, method=args.integration,
                        **extra)


def output_times(t_end: float, step: float) -> np.ndarray:
    """0, step, 2 step, ..., t_end (τ_u from the switch-on), at most MAX_TIME_POINTS."""
    if not (math.isfinite(t_end) and math.isfinite(step) and t_end > 0 and step > 0):
        raise ConfigError(f"simulation time and step must be positive numbers, got {t_end} and "
                          f"{step}.")
    if t_end / step > MAX_TIME_POINTS:
        raise ConfigError(f"an output step of {step:g} over {t_end:g} tau_u makes "
                          f"{t_end / step:.3g} time points, more than the limit of "
                          f"{MAX_TIME_POINTS}: raise the step.")
    n = max(1, int(round(t_end / step)))
    return np.linspace(0.0, t_end, n + 1)


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    return repr(float(value))


def _uniform(g: nx.DiGraph, kind: str, attr: str) -> float:
    values = {d[attr] for _, d in g.nodes(data=True) if d["kind"] == kind}
    if len(values) != 1:
        raise ConfigError(f"every {kind} node must share one {attr}, found {sorted(values)}.")
    return values.pop()


def _phi_expr(phi: str, node: str, vs: float) -> str:
    """φ(V(node)/v_scale) as a B-source expression (model units)."""
    v = f"V({node})/{_fmt(vs)}"
    expr = {"tanh": f"tanh({v})", "sigmoid": f"1/(1+exp(-{v}))", "relu": f"max({v},0)",
            "linear": f"({v})"}
    if phi not in expr:
        raise ConfigError(f"no circuit realisation of the activation '{phi}'.")
    return expr[phi]


def _rate_element(phi: str, vs: float, R: float) -> list:
    """r = φ(v) as a current R⁻¹ v_scale φ(V/v_scale) into R (a node, not a branch equation)."""
    if phi == "linear":
        source = f"Grate 0 rate soma 0 {_fmt(1.0 / R)}"
    else:
        source = f"Brate 0 rate I = {_fmt(vs / R)}*{_phi_expr(phi, 'soma', vs)}"
    return [source, f"Rrate rate 0 {_fmt(R)}"]


def _subcircuits(g: nx.DiGraph) -> list:
    R = _uniform(g, "soma", "R")
    C = _uniform(g, "soma", "C")
    vs = g.graph["scaling"]["v_scale"]
    lines = []
    for phi in dict.fromkeys(g.graph["activations"]):
        lines += [f".subckt dfc_neuron_{phi} basal apical soma rate",
                  f"* soma of eq. (1): R_v C_v dV/dt = V(basal) + V(apical) - V(soma), "
                  f"R_v C_v = tau_v; rate r = {phi}(v)",
                  f"Gbasal 0 soma basal 0 {_fmt(1.0 / R)}",
                  f"Gapical 0 soma apical 0 {_fmt(1.0 / R)}",
                  f"Rsoma soma 0 {_fmt(R)}",
                  f"Csoma soma 0 {_fmt(C)}",
                  *_rate_element(phi, vs, R),
                  ".ends", ""]
    lines += controller_subcircuit(_uniform(g, "integrator", "R_in"),
                                   _uniform(g, "integrator", "C"), g.graph["k_p"],
                                   g.graph["alpha"], g.graph["leak"])
    return lines


def controller_subcircuit(R_in: float, C_u: float, k_p: float, alpha: float, leak: str) -> list:
    """The ``dfc_controller`` subcircuit of eq. (4) (module docstring), as lines."""
    if alpha == 0:
        leak_line = "* no leak: alpha = 0"
    elif leak == "integral":
        leak_line = f"Rleak integ 0 {_fmt(R_in / alpha)}"
    else:
        leak_line = f"Gleak integ 0 u 0 {_fmt(alpha / R_in)}"
    law = "e - alpha u_int" if leak == "integral" else "e - alpha u"
    return [".subckt dfc_controller target rate enable error integ prop u",
            f"* eq. (4): e = enable (r* - r_L); tau_u du_int/dt = {law}; u = u_int + k_p e",
            "Berror error 0 V = V(enable)*(V(target)-V(rate))",
            f"Gint 0 integ error 0 {_fmt(1.0 / R_in)}",
            f"Cint integ 0 {_fmt(C_u)}",
            leak_line,
            f"Eprop prop 0 error 0 {_fmt(k_p)}",
            "Eu u prop integ 0 1",
            ".ends", ""]


def _synapse_lines(g: nx.DiGraph, sum_inputs: bool, every_synapse: bool = False) -> dict:
    """Element lines per (kind, layer), one per synapse that carries current, in the graph's
    edge order: a G element (VCCS) or, for a constant input, an I element; with ``sum_inputs``
    the I elements into one node are one source ``Iw1_k`` carrying their sum."""
    out, summed = {}, {}
    nodes = g.nodes
    for pre, post, d in g.edges(data=True):
        kind = d["kind"]
        if kind not in ("forward", "feedback"):
            continue
        p = nodes[post]
        name = f"{'w' if kind == 'forward' else 'q'}{p['layer']}_{p['index']}_{nodes[pre]['index']}"
        if d["realisation"] == "isource":
            if sum_inputs:
                summed.setdefault((kind, p["layer"], post), []).append(d["I"])
            elif d["I"] != 0 or every_synapse:
                out.setdefault((kind, p["layer"]), []).append(
                    f"I{name} 0 {post} DC {_fmt(d['I'])}")
        elif d["G"] != 0 or every_synapse:
            out.setdefault((kind, p["layer"]), []).append(
                f"G{name} 0 {post} {pre} 0 {_fmt(d['G'])}")
    for (kind, layer, post), currents in summed.items():
        total = math.fsum(currents)
        if total != 0 or every_synapse:
            out.setdefault((kind, layer), []).append(
                f"I{'w' if kind == 'forward' else 'q'}{layer}_{nodes[post]['index']} 0 {post} DC "
                f"{_fmt(total)}")
    return out


def _wrap(prefix: str, items: list, per_line: int = 8) -> list:
    """``prefix items...`` over several lines (SPICE continuation lines start with '+')."""
    chunks = [" ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return [f"{prefix} {chunks[0]}"] + [f"+ {c}" for c in chunks[1:]] if chunks else [prefix]


def _header(g: nx.DiGraph, phase: str, settle: float, t_end: float, sum_inputs: bool) -> list:
    sc = g.graph["scaling"]
    sizes = g.graph["layer_sizes"]
    L = len(sizes) - 1
    what = {"op": "DC operating point: the feed-forward equilibrium of eq. (2)",
            "feedforward": f"transient of {t_end:g} tau_u with the controller off throughout",
            "wake": f"wake phase: {settle:g} tau_u settling with the controller off, then "
                    f"{t_end:g} tau_u with the controller on (target r* of eq. (3))",
            "sleep": f"sleep phase: {settle:g} tau_u settling with the controller off, then "
                     f"{t_end:g} tau_u with the controller on (target r* = r_L^-) and the "
                     f"noise of eq. (12) in the apical compartments",
            "single-phase": f"single phase: {settle:g} tau_u settling with the controller off, "
                            f"then {t_end:g} tau_u with the controller on (the circuit's target "
                            f"r* of eq. (3)), the noise of eq. (12) in the apical compartments "
                            f"and both plasticities"}[phase]
    return [
        f"* DFC network {'-'.join(map(str, sizes))} (Meulemans et al., NeurIPS 2021) -- "
        "written by dfc_analog.circuit.netlist",
        f"* dfc_analog {__version__}",
        f"* analysis: {what}",
        f"* scaling: 1 tau_u = {sc['time_scale']:g} s, 1 model unit = {sc['v_scale']:g} V, "
        f"R = {sc['resistance']:g} Ohm; tau_v = {g.graph['tau_v']:g}, k_p = {g.graph['k_p']:g}, "
        f"alpha = {g.graph['alpha']:g} (leak '{g.graph['leak']}')",
        "* t = 0 of the model is the controller switch-on, at t_on = settle in this netlist",
        "* node names (layers i = 1..L, neurons k 0-based = row of W_i in weights.npz):",
        "*   in_j          input x_j",
        "*   l<i>_basal_k  basal compartment v_B = sum_j W_i[k,j] r_{i-1,j} + b_i[k]",
        "*   l<i>_apical_k apical compartment v_A = sum_m Q_i[k,m] u_m",
        "*   l<i>_soma_k   soma v of eq. (1)      l<i>_rate_k  rate r = phi(v)",
        f"*   ctl_target_m  target r*_m            ctl_error_m  e_m = enable (r*_m - "
        f"l{L}_rate_m)",
        "*   ctl_int_m     integrator u_int,m     ctl_prop_m   k_p e_m",
        "*   ctl_u_m       control u_m            ctl_enable   controller switch (0 / 1)",
        "* elements: Gw<i>_k_j = synapse W_i[k,j], Gq<i>_k_m = feedback Q_i[k,m] (gain w/R),",
        "*   Iw1_k = the layer-1 synapses of neuron k on the constant input (current "
        "sum_j W_1[k,j] x_j v_scale/R)," if sum_inputs else
        "*   Iw1_k_j = synapse W_1[k,j] on the constant input (current W x_j v_scale/R),",
        "*   Ib<i>_k = bias, X<i>_k = neuron k of layer i, Xctl_m = controller of output m",
    ] + ([
        "* the circuit forms its target r* of eq. (3): ctl_hold_m  track-and-hold of r_L,m "
        "(r_L^- from the switch-on), ctl_label_m  label y_m, ctl_step  step g (volts)",
    ] if g.graph.get("target") else []) + ([
        "* the circuit integrates eq. (5): l<i>_delta_k  enable (phi(v) - phi(v_B)) (or v - v_B), "
        "l<i>_dw_k_j / l<i>_db_k  integrators,",
        "*   V = v_scale (1/T) int_0^T Delta r_{i-1,j} dt at the end; the update of a minibatch "
        "of B is g_W_i[k,j] = -(2/B) sum_b V / v_scale",
    ] if g.graph.get("plasticity") else []) + ([
        "* sleep phase (eqs. 12-13): ctl_hold_m  track-and-hold of r_L,m = the target r*_m; "
        "Cl<i>_apical_k  C_A of the apical low-pass tau_A,",
        "*   to l<i>_noise_k  noise of eq. (12): the Wiener path v_scale sigma_i/tau_A W(t) "
        "(or a TRNOISE current into the apical node, C_A to ground)",
    ] + ([
        "*   l<i>_dq_k_m  integrator of Q_i[k,m]: V = -v_scale (1/T) int_0^T v_A,i,k u_m dt / "
        "sigma_hat^2 at the end; g_Q_i[k,m] = -(1/B) sum_b V / v_scale",
    ] if g.graph["sleep"]["plasticity"] else []) if g.graph.get("sleep") else []) + ([
        "* single phase (App. C.3): l<i>_apnoise_k  the noise of eq. (12) low-passed by tau_A "
        "(R || C_A to l<i>_noise_k), added to the apical sum,",
    ] + ([
        "*   ctl_hp_m  RC high-pass u_hp = u - u_lp (tau_hp); l<i>_dq_k_m  integrator of Q_i[k,m]: "
        "V = -v_scale (1/T_fb) int_{t_d}^T v_A,i,k u_hp,m dt / sigma_hat^2,",
        "*   from t_d = fb_delay on (ctl_fbgate, 0 then 1 V, when t_d > 0) over T_fb = T - t_d",
    ] if g.graph["single_phase"]["plasticity"] else []) if g.graph.get("single_phase") else []) \
        + [""]


def write_netlist(g: nx.DiGraph, phase: str = "wake", t_end: float = 5.0, times=None,
                  settle: float = 1.0, options: SpiceOptions | None = None, noise=None) -> str:
    """The netlist text of the graph for one analysis.

    ``phase``: ``'op'`` (``.op`` only), ``'feedforward'`` (transient, controller off),
    ``'wake'`` (settle, then the controller on) or, for a graph of the sleep phase, ``'sleep'``
    (settle, then the controller on with the noise; ``noise``: see :func:`noise_lines`), and
    for a graph of the single phase ``'single-phase'`` (the same, with the circuit's target).
    ``t_end`` and ``times`` (output times, τ_u after the switch-on; default 100 steps) describe
    the transient after the ``settle`` period.
    """
    if phase not in PHASES:
        raise ConfigError(f"unknown phase '{phase}': choose one of {', '.join(PHASES)}.")
    sleep, single = g.graph.get("sleep"), g.graph.get("single_phase")
    if (phase == "sleep") != bool(sleep) and phase != "op":
        raise ConfigError("the sleep phase needs the sleep phase's circuit (graph.sleep_graph), "
                          "and that circuit runs the sleep phase (or 'op') only.")
    if (phase == "single-phase") != bool(single) and phase != "op":
        raise ConfigError("the single phase needs the single phase's circuit "
                          "(graph.single_phase_graph), and that circuit runs the single phase "
                          "(or 'op') only.")
    options = options or SpiceOptions()
    sc = g.graph["scaling"]
    ts, vs = sc["time_scale"], sc["v_scale"]
    sizes = g.graph["layer_sizes"]
    L = len(sizes) - 1
    if phase != "op":
        if not (math.isfinite(t_end) and math.isfinite(settle) and t_end > 0 and
                (settle > 0 if phase in SWITCHED else settle >= 0)):
            raise ConfigError(f"simulation time and settling time must be positive, got "
                              f"{t_end} and {settle} tau_u.")
        times = output_times(t_end, t_end / 100) if times is None else \
            np.asarray(times, dtype=np.float64).reshape(-1)
        if times.size == 0 or np.any(np.diff(times) <= 0) or times[0] < 0 or \
                times[-1] > t_end * (1 + 1e-12):
            raise ConfigError(f"output times must increase within [0, {t_end}] tau_u.")

    lines = _header(g, phase, settle, t_end, options.sum_inputs) + _subcircuits(g)
    lines.append("* inputs x (layer 0)")
    for name, d in g.nodes(data=True):
        if d["kind"] == "input":
            lines += [f"I{name} 0 {name} DC {_fmt(d['I'])}", f"R{name} {name} 0 {_fmt(d['R'])}"]
    synapses = _synapse_lines(g, options.sum_inputs, options.every_synapse)
    by_layer = {}
    for name, d in g.nodes(data=True):
        if d["layer"]:
            by_layer.setdefault((d["kind"], d["layer"]), []).append((name, d))
    for i in range(1, L + 1):
        lines += ["", f"* layer {i}: basal sums (W_{i}, b_{i}), apical sums (Q_{i}), neurons"]
        lines += [f"R{n} {n} 0 {_fmt(d['R'])}" for n, d in by_layer[("basal", i)]]
        lines += [f"Ib{i}_{d['index']} 0 {neuron_name(i, 'basal', d['index'])} DC {_fmt(d['I'])}"
                  for _, d in by_layer.get(("bias", i), [])]
        lines += synapses.get(("forward", i), [])
        lines += [f"R{n} {n} 0 {_fmt(d['R'])}" for n, d in by_layer[("apical", i)]]
        lines += synapses.get(("feedback", i), [])
        phi = g.graph["activations"][i - 1]
        lines += [f"X{i}_{k} {neuron_name(i, 'basal', k)} {neuron_name(i, 'apical', k)} "
                  f"{neuron_name(i, 'soma', k)} {neuron_name(i, 'rate', k)} dfc_neuron_{phi}"
                  for k in range(sizes[i])]

    targets = [(name, d["V"]) for name, d in g.nodes(data=True)
               if d["kind"] == "target" and d.get("source") is None]
    lines += controller_lines(phase, settle, times, ts, targets, L, sizes[-1])
    if g.graph.get("target"):
        lines += circuit_target_lines(g)
    if g.graph.get("plasticity"):
        lines += integrator_lines(g)
    if sleep:
        lines += sleep_lines(g, settle * ts if phase == "sleep" else None, t_end, noise)
    if single:
        lines += single_phase_lines(g, settle * ts if phase == "single-phase" else None, t_end,
                                    noise)
    lines += ["", options_line(options)]
    lines += _wrap(".save", saved_nodes(g) + learning_nodes(g), 8)
    lines.append(analysis_line(phase, times, t_end, settle, ts,
                               options.step_limit(g.graph["tau_v"])))
    if phase != "op":
        # what `ngspice -b` prints: the output rates and the control signals
        lines += _wrap(".print tran", [f"V({neuron_name(L, 'rate', m)})" for m in range(sizes[-1])]
                       + [f"V({controller_name('u', m)})" for m in range(sizes[-1])], 8)
    lines.append(".end")
    return "\n".join(lines) + "\n"


def controller_lines(phase: str, settle: float, times, ts: float, targets: list, L: int,
                     n_L: int, instance=None, rise: float = SWITCH_RISE) -> list:
    """The controller section: the switch ``ctl_enable`` (PWL, module docstring; its edge
    ``rise`` τ_u), the target sources r* (``targets``: (node, volts) per output) and one
    ``dfc_controller`` per output (``instance(m)``: what follows the ports of output m's
    instance, other than that)."""
    lines = ["", "* controller (eq. 4) per output m, its target r* (eq. 3) and the switch"]
    t_on = settle * ts
    if phase == "op":
        lines.append(f"V{controller_name('enable')} {controller_name('enable')} 0 DC 0")
    else:
        corners = [(0.0, 0.0)]
        if phase in SWITCHED:
            corners += [(t_on - rise * ts, 0.0), (t_on, 1.0)]
        level = 1.0 if phase in SWITCHED else 0.0
        corners += [(t_on + t * ts, level) for t in times if t > 0]
        if phase == "feedforward" and settle > 0:
            corners.insert(1, (t_on, 0.0))
        lines += _wrap(f"V{controller_name('enable')} {controller_name('enable')} 0 PWL(",
                       [f"{_fmt(t)} {_fmt(v)}" for t, v in corners], 4)
        lines[-1] += " )"
    lines += [f"V{name} {name} 0 DC {_fmt(volts)}" for name, volts in targets]
    for m in range(n_L):
        ports = [controller_name("target", m), neuron_name(L, "rate", m),
                 controller_name("enable")] + [controller_name(s, m)
                                               for s in ("error", "int", "prop", "u")]
        lines.append(f"Xctl_{m} {' '.join(ports)} "
                     f"{'dfc_controller' if instance is None else instance(m)}")
    return lines


def circuit_target_lines(g: nx.DiGraph) -> list:
    """The circuit's own target of eq. (3) (graph.CircuitTarget): per output a track-and-hold,
    a B-source current G_h (1 - enable) (V(r_L) - V(hold)) into C_h (τ_h = C_h / G_h ≪ the
    settling time), so the held voltage is r_L while the controller is off and r_L^- from the
    switch-on on; the label source y; and r* as a B-source of the held values, the label and
    the step g (a source of g volts):
    mse r* = V(hold) + 2 g (V(label) - V(hold)); cross-entropy
    r* = V(hold) - g v_scale (softmax(V(hold)/v_scale) - V(label)/v_scale)."""
    vs = g.graph["scaling"]["v_scale"]
    loss = g.graph["target"]["loss"]
    sizes = g.graph["layer_sizes"]
    L, n_L = len(sizes) - 1, sizes[-1]
    enable, step = controller_name("enable"), controller_name("step")
    lines = ["", f"* target r* of eq. (3) formed by the circuit ({loss}): track-and-hold of "
             "r_L, label y, step g"]
    lines.append(f"V{step} {step} 0 DC {_fmt(g.nodes[step]['V'])}")
    exps = [f"exp(V({controller_name('hold', k)})/{_fmt(vs)})" for k in range(n_L)]
    for m in range(n_L):
        hold, lab, tgt = (controller_name(s, m) for s in ("hold", "label", "target"))
        lines += hold_lines(g, m) + [f"V{lab} {lab} 0 DC {_fmt(g.nodes[lab]['V'])}"]
        if loss == "mse":
            expr = f"V({hold})+2*V({step})*(V({lab})-V({hold}))"
        else:
            expr = (f"V({hold})-V({step})*({_fmt(vs)}*{exps[m]}/({'+'.join(exps)})"
                    f"-V({lab}))")
        lines.append(f"B{tgt} {tgt} 0 V = {expr}")
    return lines


def hold_lines(g: nx.DiGraph, m: int) -> list:
    """The track-and-hold of r_L,m: a B-source current G_h (1 - enable) (V(r_L) - V(hold)) into
    C_h (τ_h = C_h / G_h ≪ the settling time)."""
    L = len(g.graph["layer_sizes"]) - 1
    hold = controller_name("hold", m)
    d = g.nodes[hold]
    return [f"B{hold} 0 {hold} I = {_fmt(d['G'])}*(1-V({controller_name('enable')}))*"
            f"(V({neuron_name(L, 'rate', m)})-V({hold}))",
            f"C{hold} {hold} 0 {_fmt(d['C'])}"]


def sleep_lines(g: nx.DiGraph, t_on: float | None, t_end: float, noise=None) -> list:
    """The sleep phase's own elements (graph.CircuitSleep): per output the track-and-hold and
    the target r*_m = V(hold) (an E element); per neuron the apical capacitor C_A and the noise
    of eq. (12) (:func:`noise_lines`); per feedback synapse the integrator of -v_A u
    (:func:`feedback_integrator_lines`). ``t_on`` (seconds) is the switch-on, ``None`` for the
    operating point (no noise)."""
    lines = ["", "* sleep phase: target r* = held r_L^-, noise of eq. (12), integrators of "
             "eq. (13)"]
    for m in range(g.graph["layer_sizes"][-1]):
        tgt, hold = controller_name("target", m), controller_name("hold", m)
        lines += hold_lines(g, m) + [f"E{tgt} {tgt} 0 {hold} 0 1"]
    return lines + noise_lines(g, g.graph["sleep"]["params"], t_on, t_end, noise) + \
        feedback_integrator_lines(g)


def single_phase_lines(g: nx.DiGraph, t_on: float | None, t_end: float, noise=None) -> list:
    """The single phase's own elements (graph.CircuitSinglePhase), beside the wake phase's
    target (:func:`circuit_target_lines`) and eq. (5) integrators (:func:`integrator_lines`):
    per neuron the noise filter l<i>_apnoise_k (R to ground, C_A to its noise source,
    :func:`noise_lines`) and a VCCS 1/R of it into the apical sum; per output the RC high-pass
    of u (C_hp from u, R to ground); per feedback synapse the integrator of -v_A u_hp
    (:func:`feedback_integrator_lines`). ``t_on`` as :func:`sleep_lines`'."""
    lines = ["", "* single phase: noise of eq. (12) low-passed by tau_A into the apical sums, "
             "high-pass of u, integrators of eq. (13) on it"]
    for name, d in g.nodes(data=True):
        if d["kind"] == "noise_filter":
            apical = neuron_name(d["layer"], "apical", d["index"])
            lines += [f"R{name} {name} 0 {_fmt(d['R'])}",
                      f"G{name} 0 {apical} {name} 0 {_fmt(1.0 / d['R'])}"]
        elif d["kind"] == "highpass":
            u = controller_name("u", d["index"])
            lines += [f"C{name} {u} {name} {_fmt(d['C'])}", f"R{name} {name} 0 {_fmt(d['R'])}"]
        elif d["kind"] == "fb_gate":
            lines.append(fb_gate_line(name, d["delay"], t_on, g.graph["scaling"]["time_scale"]))
    return lines + noise_lines(g, g.graph["single_phase"]["params"], t_on, t_end, noise) + \
        feedback_integrator_lines(g)


def fb_gate_line(name: str, delay: float, t_on: float | None, ts: float,
                 rise: float = SWITCH_RISE) -> str:
    """The gate of the single phase's eq. (13) integrators (graph.CircuitSinglePhase, fb_delay):
    a PWL source at 0 V until ``delay`` τ_u after the switch-on ``t_on`` (seconds) and 1 V from
    then on, its edge ``rise`` τ_u ending exactly there; at 0 V for the operating point
    (``t_on`` None)."""
    if t_on is None:
        return f"V{name} {name} 0 DC 0"
    t_gate = t_on + delay * ts
    return f"V{name} {name} 0 PWL(0 0 {_fmt(t_gate - rise * ts)} 0 {_fmt(t_gate)} 1)"


def noise_lines(g: nx.DiGraph, p: dict, t_on: float | None, t_end: float, noise=None) -> list:
    """The noise of eq. (12) (graph.CircuitSleep): per noise node its capacitor C_A from the node
    it drives (the apical compartment in the sleep phase, the noise filter in the single phase)
    and its source. ``p`` holds the phase's dt and t_end (its parameters as the graph keeps
    them).

    ``noise`` (steps, Σ n_i): the standard-normal samples ξ_k,c of neuron column c (the state's
    order: layer 1's neurons, then layer 2's, ...). C_A runs from the driven node to the noise
    node, a PWL voltage source playing the path of :func:`noise_corners`. ``None``: C_A to ground and
    ngspice's TRNOISE(I dt 0 0) current into the driven node, rms I = v_scale σ_i / (R √dt),
    resampled every dt from t = 0 and switched in at t_on by a B-source (ngspice 39 cannot seed
    TRNOISE, see :mod:`dfc_analog.circuit.crossbar`: a fresh path per run); it is linear between
    its samples, so its low-frequency intensity I² dt is the same and its law differs from the
    zero-order hold's by O(dt/τ_A). ``t_on`` (seconds) is the switch-on, ``None`` for the
    operating point (no noise). The phase lasts the steps, ``t_end`` = steps · dt."""
    ts = g.graph["scaling"]["time_scale"]
    sizes = g.graph["layer_sizes"]
    steps, dt = max(1, int(round(p["t_end"] / p["dt"]))), p["dt"]
    if t_on is not None and abs(t_end - steps * dt) > 1e-9 * steps * dt:
        raise ConfigError(f"the phase lasts its {steps} noise steps of {dt:g} tau_u, "
                          f"{steps * dt:g} tau_u, not {t_end:g}.")
    corners = noise_corners(g, p, t_on, noise) if t_on is not None and noise is not None else {}
    enable = controller_name("enable")
    lines = []
    for name, d in g.nodes(data=True):
        if d["kind"] != "noise":
            continue
        (driven,) = g.successors(name)
        capacitor = f"C{driven} {driven} {{}} {_fmt(g.edges[name, driven]['C'])}"
        if t_on is None:
            lines.append(capacitor.format(0))
        elif noise is None:
            lines += [capacitor.format(0),
                      f"V{name} {name} 0 DC 0 TRNOISE(1 {_fmt(dt * ts)} 0 0)",
                      f"B{name} 0 {driven} I = {_fmt(d['I'])}*V({enable})*V({name})"]
        else:
            pairs = corners[f"V{name}"].reshape(-1, 2)
            lines += [capacitor.format(name)] + _wrap(
                f"V{name} {name} 0 PWL(", [f"{_fmt(t)} {_fmt(v)}" for t, v in pairs] + [")"], 6)
    return lines


def noise_corners(g: nx.DiGraph, p: dict, t_on: float, noise) -> dict:
    """The PWL corners of the noise sources of eq. (12) (:func:`noise_lines`; ``p`` the phase's
    parameters), source element name → (t_0, v_0, t_1, v_1, ...) in seconds and volts, for the
    standard-normal samples ``noise`` (steps, Σ n_i): source ``V<l{i}_noise_k>`` of neuron
    column c plays the path v_scale (σ_i/τ_A) W(t), W(t_on + k dt) = √dt Σ_{j<k} ξ_j,c, linear
    in between and 0 up to ``t_on`` (seconds): the same Euler–Maruyama increments as the
    model's, one corner per step."""
    ts = g.graph["scaling"]["time_scale"]
    n = sum(g.graph["layer_sizes"][1:])
    steps, dt = max(1, int(round(p["t_end"] / p["dt"]))), p["dt"]
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != (steps, n) or not np.all(np.isfinite(noise)):
        raise ConfigError(f"the noise of eq. (12) must be ({steps}, {n}) finite "
                          f"standard-normal samples, got shape {noise.shape}.")
    path = np.vstack([np.zeros((1, n)), np.cumsum(noise, axis=0) * math.sqrt(dt)])
    times = np.array([0.0] + [t_on + k * dt * ts for k in range(steps + 1)])
    corners = {}
    for name, d in g.nodes(data=True):
        if d["kind"] == "noise":
            values = np.concatenate([[0.0], d["V"] * path[:, d["column"]]])
            corners[f"V{name}"] = np.stack([times, values], axis=1).reshape(-1)
    return corners


def feedback_integrator_lines(g: nx.DiGraph) -> list:
    """Per feedback synapse Q_i[k, m] the integrator of eq. (13) (graph.CircuitSleep): the
    multiplier G gain V(v_A,i,k) V(c_m) / v_scale (c_m its control node: u_m, or u_hp,m in the
    single phase; times the gate V(ctl_fbgate) in a single phase with fb_delay) into C_int
    with its leak."""
    vs = g.graph["scaling"]["v_scale"]
    lines = []
    for name, d in g.nodes(data=True):
        if d["kind"] == "feedback_integrator":
            apical = neuron_name(d["layer"], "apical", d["index"])
            gate = f"*V({d['gate']})" if d.get("gate") else ""
            lines += [f"B{name} 0 {name} I = {_fmt(d['G'] * d['gain'] / vs)}*V({apical})*"
                      f"V({d['control']}){gate}",
                      f"C{name} {name} 0 {_fmt(d['C'])}",
                      f"R{name} {name} 0 {_fmt(d['R_leak'])}"]
    return lines


def integrator_lines(g: nx.DiGraph) -> list:
    """The circuit's own eq. (5) (graph.CircuitPlasticity): per neuron Δ = enable (φ(v) - φ(v_B))
    (or enable (v - v_B)) as a B-source voltage, and per forward synapse W_i[k, j] (bias b_i[k])
    a multiplier, the B-source current G V(Δ) V(r_{i-1,j}) / v_scale (G V(Δ)), into C_int =
    T time_scale G with its leak R_leak: V(cap) = v_scale (1/T) ∫ Δ r_{i-1,j} dt over the phase.
    (A multiplier of two voltages costs a quarter of one with the gate and reset in it.)"""
    vs = g.graph["scaling"]["v_scale"]
    rule = g.graph["plasticity"]["rule"]
    sizes = g.graph["layer_sizes"]
    enable = controller_name("enable")
    lines = ["", f"* eq. ({'5' if rule == 'rate' else '9'}) integrated by the circuit: "
             "Delta per neuron, one integrator capacitor per synapse and bias"]
    for i in range(1, len(sizes)):
        phi = g.graph["activations"][i - 1]
        for k in range(sizes[i]):
            delta, basal = neuron_name(i, "delta", k), neuron_name(i, "basal", k)
            if rule == "voltage":
                expr = f"V({neuron_name(i, 'soma', k)})-V({basal})"
            else:
                expr = f"V({neuron_name(i, 'rate', k)})-{_fmt(vs)}*{_phi_expr(phi, basal, vs)}"
            lines.append(f"B{delta} {delta} 0 V = V({enable})*({expr})")
        for name, d in g.nodes(data=True):
            if d["kind"] in ("weight_integrator", "bias_integrator") and d["layer"] == i:
                delta = neuron_name(i, "delta", d["index"])
                if d["pre"] is None:
                    source = f"G{name} 0 {name} {delta} 0 {_fmt(d['G'])}"
                else:
                    pre = input_name(d["pre"]) if i == 1 else neuron_name(i - 1, "rate", d["pre"])
                    source = f"B{name} 0 {name} I = {_fmt(d['G'] / vs)}*V({delta})*V({pre})"
                lines += [source, f"C{name} {name} 0 {_fmt(d['C'])}",
                          f"R{name} {name} 0 {_fmt(d['R_leak'])}"]
    return lines


def analysis_line(phase: str, times, t_end: float, settle: float, ts: float,
                  step_limit: float) -> str:
    """``.op``, or the ``.tran`` over the settling period and [0, t_end] τ_u with the output
    step and the step cap ``step_limit`` (τ_u)."""
    if phase == "op":
        return ".op"
    step = float(np.min(np.diff(times))) if times.size > 1 else t_end
    return f".tran {_fmt(step * ts)} {_fmt(settle * ts + t_end * ts)} 0 {_fmt(step_limit * ts)}"


def options_line(options: SpiceOptions) -> str:
    """The ``.options`` line of the simulator tolerances."""
    return (f".options reltol={_fmt(options.reltol)} abstol={_fmt(options.abstol)} "
            f"vntol={_fmt(options.vntol)} chgtol={_fmt(options.charge_tolerance())} "
            f"trtol={_fmt(options.trtol)} method={options.method}")


def saved_nodes(g: nx.DiGraph) -> list:
    """The node voltages a simulation keeps: every compartment, rate and controller signal."""
    keep = ("soma", "basal", "apical", "rate", "error", "integrator", "control")
    return [name for name, kind in g.nodes(data="kind") if kind in keep]


def learning_nodes(g: nx.DiGraph) -> list:
    """The nodes of the circuit's own learning: held outputs, the circuit's targets, and the
    synapse and bias integrators (:func:`circuit_target_lines`, :func:`integrator_lines`)."""
    out = []
    for name, d in g.nodes(data=True):
        if d["kind"] in ("hold", "weight_integrator", "bias_integrator",
                         "feedback_integrator") or (
                d["kind"] == "target" and d.get("source") == "circuit"):
            out.append(name)
    return out
