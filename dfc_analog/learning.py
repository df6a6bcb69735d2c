"""Output target (eq. 3), the forward learning rules DFC, DFC-SS, DFC-SSA, and the DFA and BP
baselines.

Every rule returns, per layer, a *gradient-like* tensor g (the negative of the eq. (5) / (9) weight
change) so that a standard optimizer can apply it; its scale follows the authors' code, which
Adam's ε and the gradient clipping are tuned against:

    DFC      g_W_i = -(2/B) (1/T) ∫_0^T Σ_b Δ_i(t) r_{i-1}(t)ᵀ dt          (eq. 5 along the trajectory)
    DFC-SS   g_W_i = -(2/B) Σ_b Δ_i(T) r_{i-1}(T)ᵀ                         (eq. 5 at the steady state)
    DFC-SSA  as DFC-SS, at the steady state of Lemma 1 (eq. 6) computed in closed form

with Δ_i = φ(v_i) - φ(v_B,i) (eq. 5) or v_i - v_B,i (eq. 9), and g_b_i the same without r_{i-1}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dynamics import ControllerParams
from .network import DFCNetwork
from .solve import SolverSettings, WakeResult, simulate_wake


def task_loss(r_L: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Minibatch-mean task loss (MSE per element, or cross-entropy of the logits r_L)."""
    if loss == "mse":
        return F.mse_loss(r_L, y)
    return F.cross_entropy(r_L, y)


def loss_gradient(r_L: torch.Tensor, y: torch.Tensor, loss: str, reduction: str) -> torch.Tensor:
    """∂L/∂r_L in closed form.

    ``reduction='mean'``: gradient of the minibatch-mean loss (the authors' convention);
    ``'sample'``: gradient of each sample's own loss, L = ‖r_L - y‖² or -log softmax(r_L)_y.
    """
    B = r_L.shape[0]
    if loss == "mse":
        grad = 2.0 * (r_L - y)
        return grad / (B * r_L.shape[1]) if reduction == "mean" else grad
    grad = torch.softmax(r_L, dim=1) - F.one_hot(y, r_L.shape[1]).to(r_L.dtype)
    return grad / B if reduction == "mean" else grad


def output_target(r_L: torch.Tensor, y: torch.Tensor, loss: str, reduction: str,
                  target_stepsize: float):
    """Eq. (3): r_L* = r_L^- - λ ∂L/∂r_L; returns (r_L*, δ_L)."""
    delta = -target_stepsize * loss_gradient(r_L, y, loss, reduction)
    return r_L + delta, delta


@dataclass
class ForwardUpdate:
    """Gradient-like updates ``gW[i]``, ``gb[i]`` for each layer, plus what produced them."""

    gW: list
    gb: list
    loss: float
    wake: WakeResult | None = None


@torch.no_grad()
def steady_state_update(net: DFCNetwork, x: torch.Tensor, vs, plasticity: str):
    """Eq. (5) / (9) evaluated at one network state ``vs`` (the DFC-SS rule)."""
    B = x.shape[0]
    gW, gb = [], []
    r_prev = x
    for i, v in enumerate(vs):
        v_basal = net.basal(i, r_prev)
        delta = v - v_basal if plasticity == "voltage" else net.phi(i, v) - net.phi(i, v_basal)
        gW.append(-(2.0 / B) * delta.T @ r_prev)
        gb.append(-(2.0 / B) * delta.sum(0))
        r_prev = net.phi(i, v)
    return gW, gb


@torch.no_grad()
def lemma1_control(net: DFCNetwork, v_ff, delta: torch.Tensor, alpha_eff: float):
    """Lemma 1 (eq. 6): u_ss = (J Q + α̃ I)⁻¹ δ_L, batched; returns (u_ss, Δv = Q u_ss)."""
    J = net.jacobian(v_ff)                                   # (B, n_L, N)
    Q = net.feedback_matrix()                                # (N, n_L)
    n_L = delta.shape[1]
    A = J @ Q + alpha_eff * torch.eye(n_L, dtype=J.dtype, device=J.device)
    u = torch.linalg.solve(A, delta.unsqueeze(-1)).squeeze(-1)
    return u, u @ Q.T


@torch.no_grad()
def ssa_state(net: DFCNetwork, x: torch.Tensor, dv_flat: torch.Tensor):
    """Nonlinear sweep v_i = W_i φ(v_{i-1}) + b_i + Δv_i of the DFC-SSA steady state."""
    vs = []
    r = x
    for i, dv in enumerate(net.split_layers(dv_flat)):
        v = net.basal(i, r) + dv
        r = net.phi(i, v)
        vs.append(v)
    return vs


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


def forward_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, method: str,
                   params: ControllerParams, solver: SolverSettings, t_end: float, loss: str,
                   reduction: str, target_stepsize: float) -> ForwardUpdate:
    """One minibatch of the wake phase: target (eq. 3), then the chosen forward rule."""
    if method == "bp":
        return backprop_update(net, x, y, loss)
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x)
        batch_loss = float(task_loss(r_ff[-1], y, loss))
        r_star, delta = output_target(r_ff[-1], y, loss, reduction, target_stepsize)
        if method == "dfa":
            return ForwardUpdate(*dfa_update(net, x, delta, v_ff, r_ff), batch_loss)
        if method == "dfc-ssa":
            _, dv = lemma1_control(net, v_ff, delta, params.alpha_eff)
            gW, gb = steady_state_update(net, x, ssa_state(net, x, dv), params.plasticity)
            return ForwardUpdate(gW, gb, batch_loss)
        wake = simulate_wake(net, x, r_star, params, solver, t_end,
                             accumulate=(method == "dfc"))
        if method == "dfc-ss":
            gW, gb = steady_state_update(net, x, wake.v, params.plasticity)
            return ForwardUpdate(gW, gb, batch_loss, wake)
        scale = -2.0 / (x.shape[0] * t_end)
        gW = [scale * wake.d[0].T @ x] + [scale * M for M in wake.M]
        gb = [scale * d.sum(0) for d in wake.d]
        return ForwardUpdate(gW, gb, batch_loss, wake)
