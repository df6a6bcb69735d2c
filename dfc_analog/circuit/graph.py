"""Run folder or network → component graph: the DFC circuit as a ``networkx.DiGraph``.

The graph is the single description the netlist writer (:mod:`dfc_analog.circuit.netlist`) reads.
Every node is one circuit node or source and carries ``kind``, ``layer`` (0 = input, 1..L, or
``None`` for the controller), ``index`` (the neuron's row in W_i, or the output m) and its
component values in SI units; every edge is one coupling with its ``kind``, model ``weight`` and
its ``realisation`` (element type and gain in SI units).

Node names say what and where (layers 1..L as in the paper, neurons 0-based as the rows of
``Wi`` in ``weights.npz``):

    in_j            input x_j (layer 0): a current source x_j v_scale / R into R
    l{i}_bias_k     bias b_i,k, a current source into the basal node
    l{i}_basal_k    basal compartment v_B,i,k = Σ_j W_i,kj r_{i-1},j + b_i,k (R to ground)
    l{i}_apical_k   apical compartment v_A,i,k = Σ_m Q_i,km u_m (R to ground)
    l{i}_soma_k     soma v_i,k of eq. (1): R_v ‖ C_v, τ_v = R_v C_v
    l{i}_rate_k     rate r_i,k = φ_i(v_i,k): a B-source current into R (a VCCS if linear)
    ctl_target_m    output target r*_m of eq. (3): an ideal voltage source holding the software's
                    r*, or (a :class:`CircuitTarget`) a B-source formed by the circuit from
    ctl_hold_m      the track-and-hold of r_L,m: follows r_L,m while the controller is off and
                    holds r_L,m^- from the switch-on on, and
    ctl_label_m     the label y_m (a voltage source; one-hot for cross-entropy), with
    ctl_step        the target step g of eq. (3) per sample (learning.targets.target_gain), a
                    voltage source of g volts
    ctl_enable      controller switch: 0 while the network settles, 1 from t = 0 on
    ctl_error_m     control error e_m = enable · (r*_m - r_L,m)
    ctl_int_m       integrator u_int,m of eq. (4): C_u with its leak α
    ctl_prop_m      proportional path k_p e_m
    ctl_u_m         control signal u_m = u_int,m + k_p e_m (the sum), fed to every apical node
    l{i}_delta_k    with a :class:`CircuitPlasticity`: Δ_i,k of eq. (5), φ(v) - φ(v_B) (or v - v_B)
    l{i}_dw_k_j     integrator of synapse W_i[k, j]: a capacitor charged by Δ_i,k r_{i-1},j
    l{i}_db_k       integrator of bias b_i[k]: a capacitor charged by Δ_i,k
    l{i}_noise_k    with a :class:`CircuitSleep`: the noise of eq. (12), a Wiener path that
                    drives the apical compartment through its capacitor C_A (τ_A = R C_A); the
                    target r*_m is then the held r_L,m^- (ctl_hold_m)
    l{i}_dq_k_m     integrator of feedback synapse Q_i[k, m]: a capacitor charged by -v_A,i,k u_m
    l{i}_apnoise_k  with a :class:`CircuitSinglePhase` (and the wake phase's
                    :class:`CircuitTarget` and :class:`CircuitPlasticity`): the noise n of
                    eq. (12) low-passed by τ_A (R ‖ C_A, C_A to l{i}_noise_k), added to the apical
                    sum, v_A,i,k = Σ_m Q_i,km u_m + n_i,k; and
    ctl_hp_m        the RC high-pass u_hp,m = u_m - u_lp,m (τ_hp) on which the Q integrators run:
                    l{i}_dq_k_m is then charged by -v_A,i,k u_hp,m
    ctl_fbgate      with fb_delay > 0: the gate (0, then 1 from fb_delay after the switch-on)
                    on the inputs of the Q integrators

Physical scaling (:class:`Scaling`): one model time unit (τ_u = 1) lasts ``time_scale`` seconds,
one model unit of any signal is ``v_scale`` volts, and every weighted sum is realised at the
resistance level ``resistance``: a synapse of weight w is a VCCS of gain w / R into a node with R
to ground, so that node's voltage is the weighted sum itself.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import ConfigError, DFCError
from dfc_analog.learning.single_phase import SinglePhaseParams
from dfc_analog.learning.sleep import SleepParams
from dfc_analog.learning.targets import target_gain
from dfc_analog.model.network import DFCNetwork
from dfc_analog.runio import atomic_write, load_run

GRAPH_FORMAT = "dfc_analog.component_graph/1"


@dataclass(frozen=True)
class Scaling:
    """Model units → SI units: ``time_scale`` s per model time unit (τ_u), ``v_scale`` V per
    model unit, ``resistance`` Ω for every summing node and every soma (R_v)."""

    time_scale: float = 1e-6
    v_scale: float = 1.0
    resistance: float = 1e4

    def __post_init__(self):
        for name in ("time_scale", "v_scale", "resistance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ConfigError(f"scaling {name} must be a positive number, got {value!r}.")

    def capacitance(self, tau: float) -> float:
        """C such that R C = τ (model time units) seconds."""
        return tau * self.time_scale / self.resistance


HOLD_TAU = 1e-3        # τ_h of the track-and-hold, in τ_u (≪ any settling time)
LEAK_RATIO = 1e6       # an integrator's leak time constant, in units of its window T


@dataclass(frozen=True)
class CircuitTarget:
    """The circuit forms r* of eq. (3) itself from its held output and the label:
    r* = r_L^- - g ∇_r L with ∇ = 2 (r_L^- - y) for ``loss='mse'`` (i.e. (1 - 2g) r_L^- + 2g y)
    or softmax(r_L^-) - onehot(y) for ``'cross_entropy'``; ``gain`` is g
    (:func:`dfc_analog.learning.targets.target_gain`: λ, or λ/(B n_L), λ/B for a minibatch mean).
    """

    loss: str = "mse"
    gain: float = 0.05

    def __post_init__(self):
        if self.loss not in ("mse", "cross_entropy"):
            raise ConfigError(f"the circuit forms the target of the loss 'mse' or "
                              f"'cross_entropy', not '{self.loss}'.")
        if not (isinstance(self.gain, (int, float)) and np.isfinite(self.gain) and
                self.gain > 0):
            raise ConfigError(f"the target step g must be a positive number, got {self.gain!r}.")


@dataclass(frozen=True)
class CircuitPlasticity:
    """The circuit integrates eq. (5) itself: one capacitor per forward synapse and bias.

    ``rule`` is ``'rate'`` (Δ = φ(v) - φ(v_B), eq. 5) or ``'voltage'`` (Δ = v - v_B, eq. 9);
    ``window`` is the phase length T in τ_u. Δ_i,k is a B-source voltage v_scale · enable ·
    (φ(v) - φ(v_B)), zero while the controller is off; the integrator of W_i[k, j] is a
    B-source current V(Δ) V(r_{i-1,j}) / (v_scale R) (a multiplier) into C_int = T · time_scale
    / R, so at the end of the phase its voltage is V = v_scale (1/T) ∫_0^T Δ r_{i-1,j} dt (model
    units inside the integral): the time average of eq. (5); the bias integrator omits r. Its
    reset is the operating point: a leak R_leak = LEAK_RATIO · R (τ = LEAK_RATIO · T) to ground
    holds it at 0 while its input is 0 (controller off), and costs a relative error
    T / (2 τ) = 5e-7 over the phase. Hence trajectory_update's
    g_W_i[k, j] = -(2/B) Σ_b V_b / v_scale (and g_b likewise)."""

    rule: str = "rate"
    window: float = 5.0

    def __post_init__(self):
        if self.rule not in ("rate", "voltage"):
            raise ConfigError(f"the circuit integrates the plasticity 'rate' or 'voltage', not "
                              f"'{self.rule}'.")
        if not (isinstance(self.window, (int, float)) and np.isfinite(self.window) and
                self.window > 0):
            raise ConfigError(f"the integration window T must be a positive number, got "
                              f"{self.window!r}.")


@dataclass(frozen=True)
class CircuitSleep:
    """The sleep phase of §5 in the circuit (eqs. 12-13, as :mod:`dfc_analog.learning.sleep`
    simulates it): the controller's target is the held feed-forward output, r* = r_L^- (the
    track-and-hold of :class:`CircuitTarget`), every apical compartment is the low-pass τ_A
    (a capacitor C_A = τ_A time_scale / R with its R) and receives the noise of eq. (12), and
    with ``plasticity`` each feedback synapse Q_i[k, m] has an integrator of eq. (13)'s
    -v_A,i,k u_m.

    The noise (``params``: σ in the hidden layers, σ_L at the output, τ_A and the step dt):
    C_A returns not to ground but to the noise node l{i}_noise_k, whose voltage plays the path
    v_scale (σ_i / τ_A) W(t) of a Wiener process, so that the apical node obeys
    τ_A dv_A = (-v_A + Q u) dt + σ_i dW (model units), eq. (12)'s noise as the model has it.
    The path is made of the model's standard-normal draws ξ_k: W(k dt) = √dt Σ_{j<k} ξ_j from
    the switch-on, linear in between (a PWL source). Over each step it moves by exactly the
    Euler–Maruyama increment σ_i √dt ξ_k = σ_i ΔW_k of
    :func:`~dfc_analog.learning.sleep.feedback_update`, and the current C_A dV/dt it drives
    spreads that increment evenly over the step (a zero-order hold of white noise: variance
    σ_i² dt per step, intensity σ_i², the law of σ_i dW). The circuit integrates the dynamics
    in continuous time, where the model's scheme errs by O(dt/τ_v) on the same path. The phase
    lasts T = steps · dt, as the model's. (Without a path the writer uses ngspice's TRNOISE, see
    :func:`dfc_analog.circuit.netlist.noise_lines`.)

    The integrator of Q_i[k, m] is a multiplier, the B-source current
    -(G / (v_scale σ̂²)) V(v_A,i,k) V(u_m), into C_int = T time_scale G (G = 1/R) with the leak
    of :class:`CircuitPlasticity`: V = -v_scale (1/T) ∫_0^T v_A,i,k u_m dt / σ̂² at the end, the
    time average of eq. (13)'s drive in the scale of feedback_update (the gain 1/σ̂² lifts the
    product, some 1e-5 model units at σ = 0.01, to the update's scale). No gate is needed: u is
    0 until the controller switches on (e = enable (r* - r_L)) and the noise starts with it.
    Hence g_Q_i[k, m] = -(1/B) Σ_b V_b / v_scale."""

    params: SleepParams = SleepParams()
    plasticity: bool = True

    @property
    def window(self) -> float:
        """The phase length T = steps · dt in τ_u."""
        return self.params.steps * self.params.dt

    def controller(self) -> ControllerParams:
        """The controller of the sleep phase (eq. 4 with its own τ_v, α, k_p)."""
        p = self.params
        return ControllerParams(tau_v=p.tau_v, tau_u=p.tau_u, alpha=p.alpha, k_p=p.k_p,
                                leak=p.leak)


@dataclass(frozen=True)
class CircuitSinglePhase:
    """Single-phase operation in the circuit (paper §7, App. C.3, as
    :mod:`dfc_analog.learning.single_phase` simulates it): the wake phase's circuit with its own
    target (:class:`CircuitTarget`) and, with ``plasticity``, its eq. (5) integrators
    (:class:`CircuitPlasticity`), plus the noise of eq. (12) in the apical compartments and, with
    ``plasticity``, one integrator of eq. (13) per feedback synapse on the high-passed control:
    both plasticities at once, no separate sleep phase.

    The noise (``params``: σ, σ_L, τ_A, the step dt): the model adds the Ornstein–Uhlenbeck
    noise n_i, τ_A dn_i = -n_i dt + σ_i dW_i, to the apical compartment, v_A,i = Q_i u + n_i
    (the control itself is not low-passed, unlike the sleep phase's apical filter). In the
    circuit n_i,k is its own node l{i}_apnoise_k: R to ground and C_A = τ_A time_scale / R to
    the noise node l{i}_noise_k, which plays the Wiener path v_scale (σ_i/τ_A) W(t) of
    :class:`CircuitSleep` (the same PWL source from the model's draws ξ, or TRNOISE), so
    τ_A dn = -n dt + σ_i dW; a VCCS 1/R adds it to the apical node's sum.

    The high-pass: an RC high-pass per output, C_hp = τ_hp time_scale / R from u_m to ctl_hp_m
    and R to ground. The capacitor's voltage u_lp = u - V(hp) obeys C_hp du_lp/dt = V(hp)/R,
    i.e. τ_hp du_lp = (u - u_lp) dt, the model's first-order low-pass, and V(hp) = u - u_lp is
    its u_hp (transfer s τ_hp / (1 + s τ_hp)); u is a VCVS output, so the RC does not load it.
    At the operating point u = 0 and the capacitor is uncharged, as the model's u_lp = 0.

    The Q integrators are :class:`CircuitSleep`'s with u_hp for u: the B-source current
    -(G / (v_scale σ̂²)) V(v_A) V(u_hp) into C_int = T_fb time_scale G with its leak, so
    g_Q_i[k, m] = -(1/B) Σ_b V_b / v_scale is single_phase_update's (1/σ̂²) ⟨v_A u_hpᵀ⟩ over
    the window T_fb (:attr:`feedback_window`); the phase lasts T = steps · dt.

    The switch of ``fb_delay``: the model integrates eq. (13) from step fb_start = round(fb_delay
    / dt) (:attr:`SinglePhaseParams.fb_start`), i.e. from t_d = fb_start · dt
    (:attr:`feedback_delay`, fb_delay rounded to the model's grid), over T_fb = T - t_d. With
    t_d > 0 each Q integrator's multiplier takes a third factor V(ctl_fbgate), a PWL gate source
    at 0 V until t_on + t_d and 1 V from then on (its edge SWITCH_RISE τ_u long, ending exactly
    at t_on + t_d, a breakpoint ngspice lands on): the integrand is the model's from t_d on and
    exactly zero before, so the integrator starts from its reset value 0 at t_d, as the model's
    sum does (the edge adds at most SWITCH_RISE / T_fb relative). A gate multiplying the
    B-source is exact; a switch element (S) would put a finite on and off resistance and a
    smooth transition region in series with the current. C_int is sized for T_fb, so the
    read-out (:func:`dfc_analog.circuit.learning.read_feedback_update`) keeps its scale and
    divides by T - t_d, as the model's 1/(steps - fb_start) does."""

    params: SinglePhaseParams = SinglePhaseParams()
    plasticity: bool = True

    @property
    def window(self) -> float:
        """The phase length T = steps · dt in τ_u."""
        return self.params.steps * self.params.dt

    @property
    def feedback_delay(self) -> float:
        """t_d = fb_start · dt: the model's fb_delay on its step grid, in τ_u."""
        return self.params.fb_start * self.params.dt

    @property
    def feedback_window(self) -> float:
        """T_fb = (steps - fb_start) · dt: the window over which eq. (13) integrates, in τ_u."""
        return (self.params.steps - self.params.fb_start) * self.params.dt

    def controller(self) -> ControllerParams:
        """The controller of the single phase: the wake phase's (eqs. 1 and 4, and eq. 5's
        plasticity signal)."""
        p = self.params
        return ControllerParams(tau_v=p.tau_v, tau_u=p.tau_u, alpha=p.alpha, k_p=p.k_p,
                                leak=p.leak, plasticity=p.plasticity)


def add_scaling_arguments(parser) -> None:
    """The ``--time-scale``, ``--v-scale`` and ``--resistance`` options of the circuit tools
    (an argparse parser or group), with :class:`Scaling`'s defaults."""
    parser.add_argument("--time-scale", type=float, default=Scaling.time_scale, metavar="SECONDS",
                        help="seconds of circuit time per τ_u (default: 1e-6)")
    parser.add_argument("--v-scale", type=float, default=Scaling.v_scale, metavar="VOLTS",
                        help="volts per model unit of every signal (default: 1)")
    parser.add_argument("--resistance", type=float, default=Scaling.resistance, metavar="OHMS",
                        help="resistance level R of every summing node and soma; synapse w is a "
                             "VCCS of gain w/R (default: 1e4)")


def scaling_from_args(args) -> Scaling:
    """The :class:`Scaling` of the arguments :func:`add_scaling_arguments` added."""
    return Scaling(time_scale=args.time_scale, v_scale=args.v_scale, resistance=args.resistance)


# Names of the circuit nodes; the netlist writer and the simulator read them from here.
def input_name(j: int) -> str:
    return f"in_{j}"


def neuron_name(layer: int, compartment: str, k: int) -> str:
    """``compartment`` in soma, basal, apical, rate, bias; ``layer`` 1..L."""
    return f"l{layer}_{compartment}_{k}"


def controller_name(signal: str, m: int | None = None) -> str:
    """``signal`` in target, hold, label, error, int, prop, u (per output m), or enable, step."""
    return f"ctl_{signal}" if m is None else f"ctl_{signal}_{m}"


def integrator_name(layer: int, k: int, j: int | None = None) -> str:
    """The integrator of synapse W_layer[k, j], or of bias b_layer[k] (``j=None``)."""
    return f"l{layer}_db_{k}" if j is None else f"l{layer}_dw_{k}_{j}"


def feedback_integrator_name(layer: int, k: int, m: int) -> str:
    """The integrator of feedback synapse Q_layer[k, m] (the sleep or the single phase)."""
    return f"l{layer}_dq_{k}_{m}"


def build_graph(net: DFCNetwork, params: ControllerParams, scaling: Scaling | None = None,
                x=None, r_star=None, constant_input: bool = True, label=None,
                target: CircuitTarget | None = None,
                plasticity: CircuitPlasticity | None = None,
                sleep: CircuitSleep | None = None,
                single: CircuitSinglePhase | None = None) -> nx.DiGraph:
    """The component graph of ``net`` under the controller ``params`` (eqs. 1 and 4).

    ``x`` (n_0,) sets the input sources and ``r_star`` (n_L,) the targets of eq. (3); either may
    be ``None`` (value 0, e.g. for a graph of the structure only). With ``target`` the circuit
    forms r* itself (:class:`CircuitTarget`) from the label ``label`` (n_L values for mse, a
    class index for cross-entropy; ``None``: 0) and ``r_star`` must be ``None``; with
    ``plasticity`` it integrates eq. (5) per synapse (:class:`CircuitPlasticity`). With ``sleep``
    it is the sleep phase's circuit (:class:`CircuitSleep`; ``params`` must be
    ``sleep.controller()``, see :func:`sleep_graph`), which takes none of the wake phase's target
    and plasticity. With ``single`` it is the single phase's circuit (:class:`CircuitSinglePhase`;
    ``params`` ``single.controller()``, the circuit's own ``target``, and ``plasticity`` over
    its window exactly when ``single.plasticity``, see :func:`single_phase_graph`).

    With ``constant_input`` the input is one DC sample, so each layer-1 synapse sees a constant presynaptic voltage and is
    realised as a constant current source W_1,kj x_j v_scale / R (exact): this keeps the
    n_0 n_1 synapses out of the circuit matrix, whose ordering they dominate in ngspice (784-64
    inputs: 9.3 s → 0.16 s). ``False`` realises them as VCCS from the input nodes.
    """
    scaling = scaling or Scaling()
    R, vs = scaling.resistance, scaling.v_scale
    sizes, L = net.layer_sizes, net.num_layers
    W = [w.detach().cpu().double().numpy() for w in net.W]
    b = [v.detach().cpu().double().numpy() for v in net.b]
    Q = [q.detach().cpu().double().numpy() for q in net.Q]
    x = _vector(x, sizes[0], "input x")
    n_L = sizes[-1]
    if sleep is not None and (target is not None or plasticity is not None or
                              r_star is not None or label is not None):
        raise ConfigError("the sleep phase's target is the held output r_L^- and it learns Q, "
                          "not W: give it no target r*, label or forward plasticity.")
    if sleep is not None and params != sleep.controller():
        raise ConfigError("the sleep phase's circuit takes its controller from its own "
                          "parameters (CircuitSleep.controller()).")
    if single is not None:
        if sleep is not None or target is None or r_star is not None:
            raise ConfigError("the single phase's target is the circuit's own (CircuitTarget), "
                              "and it has no separate sleep phase.")
        if params != single.controller():
            raise ConfigError("the single phase's circuit takes its controller from its own "
                              "parameters (CircuitSinglePhase.controller()).")
        if (plasticity is not None) != single.plasticity or plasticity is not None and \
                plasticity.window != single.window:
            raise ConfigError("the single phase's forward plasticity integrates over its whole "
                              "window exactly when its feedback plasticity does.")
    if target is not None and r_star is not None:
        raise ConfigError("give either the target r_star or the circuit's own target, not both.")
    r_star = _vector(r_star, n_L, "target r_star")
    label = _label(label, target.loss, n_L) if target is not None else None

    g = nx.DiGraph(format=GRAPH_FORMAT, layer_sizes=list(sizes), activations=list(net.activations),
                   bias=bool(net.has_bias), constant_input=bool(constant_input),
                   tau_v=params.tau_v, tau_u=params.tau_u,
                   alpha=params.alpha, k_p=params.k_p, leak=params.leak,
                   scaling=asdict(scaling),
                   target=asdict(target) if target is not None else None,
                   plasticity=asdict(plasticity) if plasticity is not None else None,
                   sleep=asdict(sleep) if sleep is not None else None,
                   single_phase=asdict(single) if single is not None else None)
    g.add_nodes_from((input_name(j), {"kind": "input", "layer": 0, "index": j,
                                      "value": float(x[j]), "R": R, "I": float(x[j]) * vs / R})
                     for j in range(sizes[0]))
    c_v = scaling.capacitance(params.tau_v)
    for i in range(1, L + 1):
        phi = net.activations[i - 1]
        for k in range(sizes[i]):
            where = {"layer": i, "index": k}
            g.add_node(neuron_name(i, "basal", k), kind="basal", R=R, **where)
            g.add_node(neuron_name(i, "apical", k), kind="apical", R=R, **where)
            g.add_node(neuron_name(i, "soma", k), kind="soma", R=R, C=c_v,
                       tau=params.tau_v * scaling.time_scale, **where)
            g.add_node(neuron_name(i, "rate", k), kind="rate", activation=phi, **where)
            g.add_edge(neuron_name(i, "basal", k), neuron_name(i, "soma", k), kind="dendrite",
                       weight=1.0, realisation="vccs", G=1.0 / R)
            g.add_edge(neuron_name(i, "apical", k), neuron_name(i, "soma", k), kind="dendrite",
                       weight=1.0, realisation="vccs", G=1.0 / R)
            g.add_edge(neuron_name(i, "soma", k), neuron_name(i, "rate", k), kind="activation",
                       weight=1.0, realisation="vccs" if phi == "linear" else "bsource")
            if net.has_bias:
                bias = float(b[i - 1][k])
                g.add_node(neuron_name(i, "bias", k), kind="bias", value=bias,
                           I=bias * vs / R, **where)
                g.add_edge(neuron_name(i, "bias", k), neuron_name(i, "basal", k), kind="bias",
                           weight=bias, realisation="isource", I=bias * vs / R)
        pre = [input_name(j) for j in range(sizes[0])] if i == 1 else \
            [neuron_name(i - 1, "rate", j) for j in range(sizes[i - 1])]
        post = [neuron_name(i, "basal", k) for k in range(sizes[i])]
        _add_synapses(g, pre, post, W[i - 1], "forward", R,
                      x * vs if i == 1 and constant_input else None)
        _add_synapses(g, [controller_name("u", m) for m in range(n_L)],
                      [neuron_name(i, "apical", k) for k in range(sizes[i])], Q[i - 1],
                      "feedback", R)

    c_u = scaling.capacitance(params.tau_u)
    g.add_node(controller_name("enable"), kind="enable", layer=None, index=None)
    for m in range(n_L):
        where = {"layer": None, "index": m}
        nodes = {s: controller_name(s, m) for s in ("target", "error", "int", "prop", "u")}
        g.add_node(nodes["target"], kind="target", value=float(r_star[m]),
                   V=float(r_star[m]) * vs, **where)
        g.add_node(nodes["error"], kind="error", **where)
        g.add_node(nodes["int"], kind="integrator", C=c_u, tau=params.tau_u * scaling.time_scale,
                   R_in=R, leak=params.leak, alpha=params.alpha,
                   R_leak=(R / params.alpha if params.alpha > 0 else None), **where)
        g.add_node(nodes["prop"], kind="proportional", gain=params.k_p, **where)
        g.add_node(nodes["u"], kind="control", **where)
        g.add_edge(nodes["target"], nodes["error"], kind="error", weight=1.0,
                   realisation="bsource")
        g.add_edge(neuron_name(L, "rate", m), nodes["error"], kind="error", weight=-1.0,
                   realisation="bsource")
        g.add_edge(controller_name("enable"), nodes["error"], kind="gate", weight=1.0,
                   realisation="bsource")
        g.add_edge(nodes["error"], nodes["int"], kind="integrate", weight=1.0,
                   realisation="vccs", G=1.0 / R)
        g.add_edge(nodes["error"], nodes["prop"], kind="proportional", weight=params.k_p,
                   realisation="vcvs", gain=params.k_p)
        g.add_edge(nodes["int"], nodes["u"], kind="sum", weight=1.0, realisation="vcvs", gain=1.0)
        g.add_edge(nodes["prop"], nodes["u"], kind="sum", weight=1.0, realisation="vcvs",
                   gain=1.0)
        if params.leak == "total" and params.alpha > 0:
            g.add_edge(nodes["u"], nodes["int"], kind="leak", weight=-params.alpha,
                       realisation="vccs", G=-params.alpha / R)
    if target is not None:
        _add_circuit_target(g, target, label, L, n_L, scaling)
    if plasticity is not None:
        _add_integrators(g, plasticity, sizes, net.has_bias, scaling)
    if sleep is not None:
        _add_sleep(g, sleep, sizes, scaling)
    if single is not None:
        _add_single_phase(g, single, sizes, scaling)
    return g


def sleep_graph(net: DFCNetwork, p: SleepParams, scaling: Scaling | None = None, x=None,
                plasticity: bool = True, constant_input: bool = True) -> nx.DiGraph:
    """The component graph of the sleep phase (:class:`CircuitSleep`) of ``net`` on the input
    ``x`` (n_0,), with the constants ``p`` and, with ``plasticity``, the Q integrators."""
    sleep = CircuitSleep(p, plasticity)
    return build_graph(net, sleep.controller(), scaling, x, None, constant_input, sleep=sleep)


def single_phase_graph(net: DFCNetwork, p: SinglePhaseParams, scaling: Scaling | None = None,
                       x=None, label=None, batch: int = 1, plasticity: bool = True,
                       constant_input: bool = True) -> nx.DiGraph:
    """The component graph of the single phase (:class:`CircuitSinglePhase`) of ``net`` on the
    input ``x`` (n_0,) with the label ``label``: the circuit's own target of eq. (3) (``p``'s
    loss, reduction and λ for a minibatch of ``batch``), the noise of eq. (12) and, with
    ``plasticity``, the integrators of eqs. (5) and (13)."""
    single = CircuitSinglePhase(p, plasticity)
    target = CircuitTarget(p.loss, target_gain(p.loss, p.reduction, p.target_stepsize, batch,
                                               net.layer_sizes[-1]))
    return build_graph(net, single.controller(), scaling, x, None, constant_input, label=label,
                       target=target,
                       plasticity=CircuitPlasticity(p.plasticity, single.window)
                       if plasticity else None, single=single)


def _add_hold(g, L: int, m: int, scaling: Scaling) -> str:
    """The track-and-hold of r_L,m (it follows r_L,m while the controller is off)."""
    R = scaling.resistance
    hold = controller_name("hold", m)
    g.add_node(hold, kind="hold", G=1.0 / R, C=scaling.capacitance(HOLD_TAU),
               tau=HOLD_TAU * scaling.time_scale, layer=None, index=m)
    g.add_edge(neuron_name(L, "rate", m), hold, kind="track", weight=1.0,
               realisation="bsource", G=1.0 / R)
    g.add_edge(controller_name("enable"), hold, kind="gate", weight=1.0, realisation="bsource")
    return hold


def _add_circuit_target(g, target: CircuitTarget, label, L: int, n_L: int, scaling: Scaling):
    """Track-and-hold, label and step sources, and r* of eq. (3) as the circuit forms it."""
    vs = scaling.v_scale
    g.add_node(controller_name("step"), kind="step", layer=None, index=None, value=target.gain,
               V=target.gain)
    for m in range(n_L):
        where = {"layer": None, "index": m}
        lab, tgt = controller_name("label", m), controller_name("target", m)
        _add_hold(g, L, m, scaling)
        g.add_node(lab, kind="label", value=float(label[m]), V=float(label[m]) * vs, **where)
        g.nodes[tgt].update(value=None, V=None, source="circuit")
        g.add_edge(lab, tgt, kind="target", weight=1.0, realisation="bsource")
        g.add_edge(controller_name("step"), tgt, kind="target", weight=1.0,
                   realisation="bsource")
        for k in (range(n_L) if target.loss == "cross_entropy" else (m,)):
            g.add_edge(controller_name("hold", k), tgt, kind="target", weight=1.0,
                       realisation="bsource")


def _add_integrators(g, plasticity: CircuitPlasticity, sizes, bias: bool, scaling: Scaling):
    """Δ_i of eq. (5) per neuron and one integrator per forward synapse (and bias)."""
    R = scaling.resistance
    c_int = scaling.capacitance(plasticity.window)
    for i in range(1, len(sizes)):
        pre = [input_name(j) for j in range(sizes[0])] if i == 1 else \
            [neuron_name(i - 1, "rate", j) for j in range(sizes[i - 1])]
        for k in range(sizes[i]):
            delta = neuron_name(i, "delta", k)
            g.add_node(delta, kind="delta", layer=i, index=k, rule=plasticity.rule)
            for source in ("soma" if plasticity.rule == "voltage" else "rate", "basal"):
                g.add_edge(neuron_name(i, source, k), delta, kind="delta", weight=1.0,
                           realisation="bsource")
            targets = [(integrator_name(i, k, j), j) for j in range(sizes[i - 1])]
            if bias:
                targets.append((integrator_name(i, k), None))
            for name, j in targets:
                g.add_node(name, kind="weight_integrator" if j is not None else
                           "bias_integrator", layer=i, index=k, pre=j, C=c_int, G=1.0 / R,
                           R_leak=LEAK_RATIO * R)
                g.add_edge(delta, name, kind="plasticity", weight=1.0, realisation="bsource")
                g.add_edge(controller_name("enable"), name, kind="gate", weight=1.0,
                           realisation="bsource")
                if j is not None:
                    g.add_edge(pre[j], name, kind="plasticity", weight=1.0,
                               realisation="bsource")


def _add_sleep(g, sleep: CircuitSleep, sizes, scaling: Scaling):
    """The sleep phase (:class:`CircuitSleep`): r* = held r_L^-, the apical filters τ_A and
    their noise currents, and one integrator per feedback synapse."""
    p = sleep.params
    L, n_L = len(sizes) - 1, sizes[-1]
    for m in range(n_L):
        tgt = controller_name("target", m)
        g.nodes[tgt].update(value=None, V=None, source="hold")
        g.add_edge(_add_hold(g, L, m, scaling), tgt, kind="target", weight=1.0,
                   realisation="vcvs", gain=1.0)
    c_a = scaling.capacitance(p.tau_a)
    for i in range(1, L + 1):
        for k in range(sizes[i]):
            g.nodes[neuron_name(i, "apical", k)].update(C=c_a, tau=p.tau_a * scaling.time_scale)
    _add_noise(g, p, sizes, scaling, lambda i, k: neuron_name(i, "apical", k))
    if sleep.plasticity:
        _add_feedback_integrators(g, sizes, p.sigma_hat, sleep.window, scaling,
                                  lambda m: controller_name("u", m))


def _add_single_phase(g, single: CircuitSinglePhase, sizes, scaling: Scaling):
    """The single phase (:class:`CircuitSinglePhase`): the apical noise filters R ‖ C_A and their
    noise, the high-pass of u and one integrator per feedback synapse on it."""
    R = scaling.resistance
    p = single.params
    L, n_L = len(sizes) - 1, sizes[-1]
    c_a = scaling.capacitance(p.tau_a)
    for i in range(1, L + 1):
        for k in range(sizes[i]):
            filtered = neuron_name(i, "apnoise", k)
            g.add_node(filtered, kind="noise_filter", layer=i, index=k, R=R, C=c_a,
                       tau=p.tau_a * scaling.time_scale)
            g.add_edge(filtered, neuron_name(i, "apical", k), kind="apical_noise", weight=1.0,
                       realisation="vccs", G=1.0 / R)
    _add_noise(g, p, sizes, scaling, lambda i, k: neuron_name(i, "apnoise", k))
    if not single.plasticity:
        return
    for m in range(n_L):
        hp = controller_name("hp", m)
        g.add_node(hp, kind="highpass", layer=None, index=m, R=R,
                   C=scaling.capacitance(p.tau_hp), tau=p.tau_hp * scaling.time_scale)
        g.add_edge(controller_name("u", m), hp, kind="highpass", weight=1.0,
                   realisation="capacitor", C=scaling.capacitance(p.tau_hp))
    gate = None
    if p.fb_start > 0:
        gate = controller_name("fbgate")
        g.add_node(gate, kind="fb_gate", layer=None, index=None, delay=single.feedback_delay)
    _add_feedback_integrators(g, sizes, p.sigma_hat, single.feedback_window, scaling,
                              lambda m: controller_name("hp", m), gate)


def _add_noise(g, p, sizes, scaling: Scaling, filtered_at):
    """The noise of eq. (12) (σ in the hidden layers, σ_L at the output, τ_A, dt of ``p``): per
    neuron a noise node whose Wiener path drives, through C_A, the node
    ``filtered_at(i, k)`` (a low-pass R ‖ C_A; :class:`CircuitSleep`)."""
    R, vs = scaling.resistance, scaling.v_scale
    L = len(sizes) - 1
    c_a = scaling.capacitance(p.tau_a)
    column = 0
    for i in range(1, L + 1):
        sigma = p.sigma_output if i == L else p.sigma
        for k in range(sizes[i]):
            noise = neuron_name(i, "noise", k)
            g.add_node(noise, kind="noise", layer=i, index=k, column=column, sigma=sigma,
                       dt=p.dt, V=vs * sigma / p.tau_a, I=vs * sigma / (R * p.dt ** 0.5))
            g.add_edge(noise, filtered_at(i, k), kind="noise", weight=sigma,
                       realisation="capacitor", C=c_a)
            column += 1


def _add_feedback_integrators(g, sizes, sigma_hat: float, window: float, scaling: Scaling,
                              control, gate: str | None = None):
    """One integrator per feedback synapse Q_i[k, m] of eq. (13)'s -v_A,i,k c_m / σ̂² over the
    ``window``, c_m the node ``control(m)`` (u_m, or u_hp,m in the single phase); with ``gate``
    (the single phase's fb_delay switch) its input is multiplied by that node's voltage."""
    R = scaling.resistance
    c_int = scaling.capacitance(window)
    for i in range(1, len(sizes)):
        apical = [neuron_name(i, "apical", k) for k in range(sizes[i])]
        for k in range(sizes[i]):
            for m in range(sizes[-1]):
                name = feedback_integrator_name(i, k, m)
                g.add_node(name, kind="feedback_integrator", layer=i, index=k, pre=m,
                           control=control(m), gate=gate, C=c_int, G=1.0 / R,
                           gain=-1.0 / sigma_hat ** 2, R_leak=LEAK_RATIO * R)
                g.add_edge(apical[k], name, kind="plasticity", weight=1.0, realisation="bsource")
                g.add_edge(control(m), name, kind="plasticity", weight=1.0,
                           realisation="bsource")
                if gate is not None:
                    g.add_edge(gate, name, kind="gate", weight=1.0, realisation="bsource")


def _label(value, loss: str, n_L: int) -> np.ndarray:
    """The label as n_L source values: y itself (mse) or one-hot of the class (cross-entropy)."""
    if loss == "mse":
        return _vector(value, n_L, "label y")
    if value is None:
        return np.zeros(n_L)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer) or not 0 <= arr[0] < n_L:
        raise ConfigError(f"the cross-entropy label must be one class index in 0..{n_L - 1}, "
                          f"got {value!r}.")
    return np.eye(n_L)[int(arr[0])]


def _add_synapses(g, pre, post, weights, kind, R, constant_pre=None):
    """One edge per synapse pre[j] → post[k] of weight weights[k, j]: a VCCS of gain w / R, or,
    for a constant presynaptic voltage ``constant_pre[j]``, a current source w V_j / R."""
    rows, cols = np.indices(weights.shape)
    w = weights.ravel().tolist()
    gain = (weights / R).ravel().tolist()
    if constant_pre is None:
        g.add_edges_from(
            (pre[j], post[k], {"kind": kind, "weight": wk, "realisation": "vccs", "G": gk})
            for k, j, wk, gk in zip(rows.ravel().tolist(), cols.ravel().tolist(), w, gain))
        return
    current = (weights * constant_pre[None, :] / R).ravel().tolist()
    g.add_edges_from(
        (pre[j], post[k], {"kind": kind, "weight": wk, "realisation": "isource", "G": gk,
                           "I": ik})
        for k, j, wk, gk, ik in zip(rows.ravel().tolist(), cols.ravel().tolist(), w, gain,
                                    current))


def _vector(value, n: int, what: str) -> np.ndarray:
    if value is None:
        return np.zeros(n)
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (n,):
        raise ConfigError(f"{what} must have shape ({n},) for this network, got "
                          f"{tuple(arr.shape)}.")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what} holds non-finite values.")
    return arr


def graph_from_run(run_dir: str | Path, scaling: Scaling | None = None, x=None,
                   r_star=None) -> nx.DiGraph:
    """The component graph of a trained run folder (its checkpoint and config)."""
    cfg, net = load_run(run_dir, device="cpu")
    return build_graph(net.double(), ControllerParams.from_config(cfg), scaling, x, r_star)


def synapse_matrices(g: nx.DiGraph, kind: str) -> list:
    """W_i (``kind='forward'``) or Q_i (``'feedback'``) of each layer, read back from the edges."""
    sizes = g.graph["layer_sizes"]
    n_L = sizes[-1]
    mats = [np.zeros((sizes[i], sizes[i - 1] if kind == "forward" else n_L))
            for i in range(1, len(sizes))]
    for pre, post, data in g.edges(data=True):
        if data["kind"] == kind:
            node = g.nodes[post]
            mats[node["layer"] - 1][node["index"], g.nodes[pre]["index"]] = data["weight"]
    return mats


def summary(g: nx.DiGraph) -> str:
    """One screen: network, scaling, node and edge counts by kind, element and value totals."""
    sc = g.graph["scaling"]
    nodes = Counter(k for _, k in g.nodes(data="kind"))
    edges = Counter(k for _, _, k in g.edges(data="kind"))
    real = Counter(r for _, _, r in g.edges(data="realisation"))
    total_c = sum(c for _, c in g.nodes(data="C") if c)
    gains = np.array([abs(G) for _, _, G in g.edges(data="G") if G is not None])
    lines = [
        f"component graph: {'-'.join(map(str, g.graph['layer_sizes']))} network, "
        f"activations {', '.join(g.graph['activations'])}",
        f"controller: k_p = {g.graph['k_p']:g}, alpha = {g.graph['alpha']:g} "
        f"(leak '{g.graph['leak']}'), tau_v = {g.graph['tau_v']:g}, tau_u = {g.graph['tau_u']:g}",
        f"scaling: {sc['time_scale']:g} s per tau_u, {sc['v_scale']:g} V per unit, "
        f"R = {sc['resistance']:g} Ohm",
        f"nodes: {g.number_of_nodes()} ("
        + ", ".join(f"{k} {n}" for k, n in sorted(nodes.items())) + ")",
        f"edges: {g.number_of_edges()} ("
        + ", ".join(f"{k} {n}" for k, n in sorted(edges.items())) + ")",
        "realised as: " + ", ".join(f"{k} {n}" for k, n in sorted(real.items())),
        f"total capacitance {total_c:.4g} F; VCCS gains {gains.min():.3g} .. {gains.max():.3g} S"
        if gains.size else f"total capacitance {total_c:.4g} F",
    ]
    return "\n".join(lines)


def save_graph(g: nx.DiGraph, path: str | Path) -> None:
    """Write node-link JSON (networkx's format, ``edges="edges"``), atomically."""
    data = nx.node_link_data(g, edges="edges")
    atomic_write(Path(path), json.dumps(data, separators=(",", ":")).encode())


def load_graph(path: str | Path) -> nx.DiGraph:
    """Read a graph written by :func:`save_graph`."""
    try:
        data = json.loads(Path(path).read_text())
        g = nx.node_link_graph(data, edges="edges")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DFCError(f"cannot read component graph '{path}': {exc}.") from None
    if g.graph.get("format") != GRAPH_FORMAT:
        raise DFCError(f"'{path}' is not a dfc_analog component graph ({GRAPH_FORMAT}).")
    return g
