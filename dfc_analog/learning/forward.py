"""The forward learning rules DFC, DFC-SS, DFC-SSA, and the DFA and BP baselines.

Every rule returns, per layer, a *gradient-like* tensor g (the negative of the eq. (5) / (9) weight
change) so that a standard optimizer can apply it; its scale follows the authors' code, which
Adam's ε and the gradient clipping are tuned against:

    DFC      g_W_i = -(2/B) (1/T) ∫_0^T Σ_b Δ_i(t) r_{i-1}(t)ᵀ dt          (eq. 5 along the trajectory)
    DFC-SS   g_W_i = -(2/B) Σ_b Δ_i(T) r_{i-1}(T)ᵀ                         (eq. 5 at the steady state)
    DFC-SSA  as DFC-SS, at the steady state of Lemma 1 (eq. 6) computed in closed form

with Δ_i = φ(v_i) - φ(v_B,i) (eq. 5) or v_i - v_B,i (eq. 9), and g_b_i the same without r_{i-1}.

The wake phase of DFC and DFC-SS comes from the ODE solver (:func:`simulate_wake`, which
integrates eq. 5 along its accepted steps) or from any other *phase source*, a callable
``(net, x, r_star, params, t_end, times) -> Trajectory`` such as the SPICE circuit: then the
update is read off its trajectory (:func:`dfc_analog.learning.updates.trajectory_update`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from dfc_analog.learning.targets import output_target, task_loss
from dfc_analog.learning.updates import trajectory_update
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import DFCNetwork, phi_departure
from dfc_analog.model.trajectory import Trajectory
from dfc_analog.solvers.wake import SolverSettings, WakeResult, simulate_wake

# A simulator of the wake phase other than the ODE solver: (net, x, r*, params, t_end, times)
# -> Trajectory on ``times``.
PhaseSource = Callable[..., Trajectory]


@dataclass(frozen=True)
class ForwardSettings:
    """Everything a forward rule needs besides the network and the data: the method, the
    dynamics' constants (eqs. 1, 4), the solver, the phase length T, and the target of eq. (3)."""

    method: str = "dfc"
    params: ControllerParams = field(default_factory=ControllerParams)
    solver: SolverSettings = field(default_factory=SolverSettings)
    t_end: float = 5.0
    loss: str = "mse"
    reduction: str = "mean"
    target_stepsize: float = 0.05
    points: int = 401       # time points of a phase source's trajectory over [0, T]

    @classmethod
    def from_config(cls, cfg) -> "ForwardSettings":
        return cls(method=cfg.method, params=ControllerParams.from_config(cfg),
                   solver=SolverSettings.from_config(cfg), t_end=cfg.t_end, loss=cfg.loss,
                   reduction=cfg.loss_reduction, target_stepsize=cfg.target_stepsize)


@dataclass
class ForwardUpdate:
    """Gradient-like updates ``gW[i]``, ``gb[i]`` for each layer, plus what produced them."""

    gW: list
    gb: list
    loss: float
    wake: WakeResult | None = None


@torch.no_grad()
def steady_state_update(net: DFCNetwork, x: torch.Tensor, vs, plasticity: str):
    """Eq. (5) / (9) evaluated at one network state ``vs`` of absolute voltages (the DFC-SS rule
    on a trajectory's last point; the solvers' own states go through the departures instead)."""
    deltas, pres = [], []
    r_prev = x
    for i, v in enumerate(vs):
        v_basal = net.basal(i, r_prev)
        r = net.phi(i, v)
        deltas.append(v - v_basal if plasticity == "voltage" else r - net.phi(i, v_basal))
        pres.append(r_prev)
        r_prev = r
    return signals_update(deltas, pres)


def signals_update(deltas, pres):
    """The DFC-SS scale of eq. (5) from its signals at one state: g_W_i = -(2/B) Δ_iᵀ r_{i-1},
    g_b_i = -(2/B) Σ_b Δ_i, for Δ_i (B, n_i) and r_{i-1} (B, n_{i-1}) per layer."""
    B = pres[0].shape[0]
    return ([-(2.0 / B) * delta.T @ pre for delta, pre in zip(deltas, pres)],
            [-(2.0 / B) * delta.sum(0) for delta in deltas])


@torch.no_grad()
def lemma1_control(net: DFCNetwork, v_ff, delta: torch.Tensor, alpha_eff: float,
                   loop_gain: torch.Tensor | None = None, r_ff=None):
    """Lemma 1 (eq. 6): u_ss = (J Q + α̃ I)⁻¹ δ_L, batched; returns (u_ss, Δv = Q u_ss).
    J Q in forward mode (:meth:`DFCNetwork.jacobian_feedback`, from the rates ``r_ff`` where
    given), J itself is never formed, unless ``loop_gain``, J Q at ``v_ff``, is given."""
    JQ = net.jacobian_feedback(v_ff, r_ff) if loop_gain is None else loop_gain
    Q = net.feedback_matrix()                                # (N, n_L)
    n_L = delta.shape[1]
    A = JQ + alpha_eff * torch.eye(n_L, dtype=JQ.dtype, device=JQ.device)
    u = torch.linalg.solve(A, delta.unsqueeze(-1)).squeeze(-1)
    return u, u @ Q.T


@torch.no_grad()
def ssa_state(net: DFCNetwork, x: torch.Tensor, dv_flat: torch.Tensor, v_ff=None, r_ff=None,
              plasticity: str = "rate"):
    """Nonlinear sweep v_i = W_i φ(v_{i-1}) + b_i + Δv_i of the DFC-SSA steady state; returns
    (v_i, φ(v_i), Δ_i) per layer, Δ_i the eq. (5) signal φ(v_i) - φ(v_B,i), formed as the
    departure φ(v_B,i + Δv_i) - φ(v_B,i) without cancellation (in float32 the plain difference
    lost 0.45° of a trained MNIST network's update), or Δv_i itself for eq. (9). ``v_ff``,
    ``r_ff``: the feed-forward voltages and rates where the caller has them (layer 1's basal part
    is v_1^-: its input x does not move)."""
    vs, rs, deltas = [], [], []
    r = x
    for i, dv in enumerate(net.split_layers(dv_flat)):
        if i == 0 and v_ff is not None:
            basal = v_ff[0]
            r_basal = net.phi(0, basal) if r_ff is None else r_ff[0]
        else:
            basal = net.basal(i, r)
            r_basal = net.phi(i, basal)
        dr = phi_departure(net.activations[i], basal, r_basal, dv)
        r = r_basal + dr
        vs.append(basal + dv)
        rs.append(r)
        deltas.append(dv if plasticity == "voltage" else dr)
    return vs, rs, deltas


def backprop_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, loss: str):
    """The BP baseline: the gradient of the minibatch-mean loss."""
    params = list(net.W) + [b for b in net.b if b.requires_grad]
    with torch.enable_grad():
        _, rs = net.feedforward(x)
        batch_loss = task_loss(rs[-1], y, loss)
        grads = torch.autograd.grad(batch_loss, params)
    L = net.num_layers
    gb = list(grads[L:]) if len(grads) > L else [torch.zeros_like(b) for b in net.b]
    return ForwardUpdate(list(grads[:L]), gb, float(batch_loss.detach()))


@torch.no_grad()
def dfa_update(net: DFCNetwork, x: torch.Tensor, delta: torch.Tensor, v_ff, r_ff):
    """The DFA baseline (Nøkland 2016) in the authors' form: layer i is nudged towards
    r_i + B_i δ_L through fixed random direct feedback B_i (stored as Q_i; Q_L = I), giving
    g_W_i = -(2/B) Σ_b (φ'(v_i) ⊙ B_i δ_L) r_{i-1}ᵀ."""
    B = x.shape[0]
    gW, gb = [], []
    for i, (v, r_prev) in enumerate(zip(v_ff, [x] + r_ff[:-1])):
        teach = net.dphi(i, v) * (delta @ net.Q[i].T)
        gW.append(-(2.0 / B) * teach.T @ r_prev)
        gb.append(-(2.0 / B) * teach.sum(0))
    return gW, gb


def forward_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, settings: ForwardSettings,
                   source: PhaseSource | None = None, loop_gain: torch.Tensor | None = None,
                   feedforward: tuple | None = None) -> ForwardUpdate:
    """One minibatch of the wake phase: target (eq. 3), then the forward rule of
    ``settings.method``. ``source`` simulates the wake phase instead of the ODE solver
    (DFC and DFC-SS only; the other rules have no simulated phase). Where the caller has them:
    ``feedforward``, ``net.feedforward(x)``, and ``loop_gain``, J Q there (DFC-SSA)."""
    method, params = settings.method, settings.params
    if method == "bp":
        return backprop_update(net, x, y, settings.loss)
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x) if feedforward is None else feedforward
        batch_loss = float(task_loss(r_ff[-1], y, settings.loss))
        r_star, delta = output_target(r_ff[-1], y, settings.loss, settings.reduction,
                                      settings.target_stepsize)
        if method == "dfa":
            return ForwardUpdate(*dfa_update(net, x, delta, v_ff, r_ff), batch_loss)
        if method == "dfc-ssa":
            _, dv = lemma1_control(net, v_ff, delta, params.alpha_eff, loop_gain, r_ff)
            _, rs, deltas = ssa_state(net, x, dv, v_ff, r_ff, params.plasticity)
            gW, gb = signals_update(deltas, [x] + rs[:-1])
            return ForwardUpdate(gW, gb, batch_loss)
        if source is not None:
            times = torch.linspace(0.0, settings.t_end, settings.points, dtype=torch.float64)
            traj = source(net, x, r_star, params, settings.t_end, times)
            if method == "dfc-ss":
                vs = [v[-1].to(x.dtype) for v in traj.soma]
                gW, gb = steady_state_update(net, x, vs, params.plasticity)
                return ForwardUpdate(gW, gb, batch_loss)
            g = [a.to(x.dtype) for a in trajectory_update(net, traj, x, params.plasticity)]
            L = net.num_layers
            return ForwardUpdate(g[:L], g[L:], batch_loss)
        wake = simulate_wake(net, x, r_star, params, settings.solver, settings.t_end,
                             accumulate=(method == "dfc"), steady=(method == "dfc-ss"),
                             nudge=delta)
        if method == "dfc-ss":      # from the departures at T, without cancellation
            gW, gb = signals_update(wake.delta, wake.pre)
            return ForwardUpdate(gW, gb, batch_loss, wake)
        scale = -2.0 / (x.shape[0] * settings.t_end)
        gW = [scale * wake.d[0].T @ x] + [scale * M for M in wake.M]
        gb = [scale * d.sum(0) for d in wake.d]
        return ForwardUpdate(gW, gb, batch_loss, wake)
