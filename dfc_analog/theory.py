"""Diagnostics of the paper's theory (§3-5, App. F.1), batched over samples.

condition1          Condition 1: std of the layer norms ‖r_0‖, ..., ‖r_{L-1}‖ over their mean
condition2_ratio    Condition 2: ‖P Q‖_F / ‖Q‖_F, P = Jᵀ(J Jᵀ)⁻¹J the projector on the row space of J
gn_update           the Gauss-Newton parameter update of Theorem 2 (damped, per sample, averaged)
mn_update           the weighted minimum-norm update of Theorem 3 (damped, in the eq. (5) form)
pi_system_matrix    the linearised network-plus-controller system of eqs. (1) and (4)
stability           largest real eigenvalue of -(JQ + αI) (Condition 3) and of the PI system
diagnostics         all of them for one minibatch and its actual update, as one dict

All updates here are gradient-like (they point uphill, as the updates the learning rules return),
so angles between them compare directions directly.
"""
from __future__ import annotations

import torch

from dfc_analog.learning.forward import (backprop_update, lemma1_control, signals_update,
                                         ssa_state)
from dfc_analog.learning.targets import loss_gradient, output_target
from dfc_analog.learning.updates import angle_deg
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import DFCNetwork

DIAGNOSTICS = ("condition1", "condition2", "angle_gn", "angle_mn", "angle_bp", "angle_ssa",
               "max_eig_condition3", "max_eig_pi")


@torch.no_grad()
def condition1(net: DFCNetwork, x: torch.Tensor) -> torch.Tensor:
    """Per sample: std / mean of ‖r_0‖, ..., ‖r_{L-1}‖ at the feed-forward state (Fig. 3C).

    (The authors' code divides by the mean inside the square root; this is the paper's form.)
    """
    _, rs = net.feedforward(x)
    norms = torch.stack([r.norm(dim=1) for r in [x] + rs[:-1]], dim=1)   # (B, L)
    return norms.std(dim=1, unbiased=False) / norms.mean(dim=1)


@torch.no_grad()
def condition2_ratio(net: DFCNetwork, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Condition-2 ratio at the feed-forward state of inputs ``x``: shape (B,)."""
    v_ff, _ = net.feedforward(x)
    J = net.jacobian(v_ff)                                         # (B, n_L, N)
    Q = net.feedback_matrix()                                      # (N, n_L)
    PQ = J.transpose(1, 2) @ torch.linalg.solve(J @ J.transpose(1, 2), J @ Q)
    return torch.linalg.matrix_norm(PQ) / torch.linalg.matrix_norm(Q)


@torch.no_grad()
def gn_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, loss: str,
              damping: float = 0.1):
    """Δθ^GN = (1/B) Σ_b J_θᵀ (J_θ J_θᵀ + γI)⁻¹ g_b (Theorem 2), g_b = ∂L/∂r_L of the batch loss.

    J_θ, the Jacobian of r_L w.r.t. all W_i and b_i, is never formed: its blocks are
    J_i ⊗ r_{i-1}ᵀ and J_i, so J_θ J_θᵀ = Σ_i J_i J_iᵀ (‖r_{i-1}‖² + 1).
    """
    v_ff, r_ff = net.feedforward(x)
    g = loss_gradient(r_ff[-1], y, loss, "mean")
    blocks = net.split_layers(net.jacobian(v_ff))                 # J_i: (B, n_L, n_i)
    pre = [x] + r_ff[:-1]
    n_L = g.shape[1]
    gram = damping * torch.eye(n_L, dtype=g.dtype, device=g.device).expand(len(x), n_L, n_L)
    for J_i, r in zip(blocks, pre):
        gram = gram + (J_i @ J_i.transpose(1, 2)) * (1.0 + (r * r).sum(1))[:, None, None]
    c = torch.linalg.solve(gram, g.unsqueeze(-1)).squeeze(-1)    # (B, n_L)
    B = len(x)
    gW, gb = [], []
    for J_i, r in zip(blocks, pre):
        s = (c.unsqueeze(1) @ J_i).squeeze(1)                    # J_iᵀ c: (B, n_i)
        gW.append(s.T @ r / B)
        gb.append(s.mean(0))
    return gW, gb


@torch.no_grad()
def mn_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, loss: str,
              damping: float = 0.1):
    """Theorem 3's weighted minimum-norm update, as the authors evaluate it: per sample
    Δv = J̄ᵀ(J̄J̄ᵀ + γI)⁻¹ g_b, then (1/B) Σ_b [φ(v_i^- + Δv_i) - φ(v_i^-)] (r_{i-1}^-)ᵀ."""
    v_ff, r_ff = net.feedforward(x)
    g = loss_gradient(r_ff[-1], y, loss, "mean")
    J = net.jacobian(v_ff)
    n_L = g.shape[1]
    gram = J @ J.transpose(1, 2) + damping * torch.eye(n_L, dtype=g.dtype, device=g.device)
    dv = (J.transpose(1, 2) @ torch.linalg.solve(gram, g.unsqueeze(-1))).squeeze(-1)
    B = len(x)
    gW, gb = [], []
    for i, (v, r, d) in enumerate(zip(v_ff, [x] + r_ff[:-1], net.split_layers(dv))):
        delta = net.phi(i, v + d) - net.phi(i, v)
        gW.append(delta.T @ r / B)
        gb.append(delta.mean(0))
    return gW, gb


@torch.no_grad()
def pi_system_matrix(net: DFCNetwork, vs, params: ControllerParams) -> torch.Tensor:
    """d/dt [Δv; u_int] = A [Δv; u_int]: eqs. (1) and (4) linearised at voltages ``vs``.

    With Ĵ the block sub-diagonal of ∂v_B,i/∂v_{i-1} = W_i diag φ'(v_{i-1}) and
    J⁰ = ∂r_L/∂v = [0 ... diag φ_L'(v_L)]:
        τ_v dΔv/dt  = (Ĵ - I - k_p Q J⁰) Δv + Q u_int
        τ_u du_int/dt = -J⁰ Δv - α u_int              (eq. 4)
                      = -(1 - α k_p) J⁰ Δv - α u_int    (leak on the total u)
    Returns A, (B, N + n_L, N + n_L).
    """
    sizes = net.layer_sizes[1:]
    N, n_L, L = sum(sizes), sizes[-1], net.num_layers
    B = vs[0].shape[0]
    dtype, device = vs[0].dtype, vs[0].device
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    Jhat = torch.zeros(B, N, N, dtype=dtype, device=device)
    for i in range(1, L):
        Jhat[:, offsets[i]:offsets[i + 1], offsets[i - 1]:offsets[i]] = \
            net.W[i] * net.dphi(i - 1, vs[i - 1]).unsqueeze(1)
    J0 = torch.zeros(B, n_L, N, dtype=dtype, device=device)
    J0[:, :, offsets[L - 1]:] = torch.diag_embed(net.dphi(L - 1, vs[L - 1]))
    Q = net.feedback_matrix()
    eye = torch.eye(N, dtype=dtype, device=device)
    p = params
    A = torch.zeros(B, N + n_L, N + n_L, dtype=dtype, device=device)
    A[:, :N, :N] = (Jhat - eye - p.k_p * Q @ J0) / p.tau_v
    A[:, :N, N:] = Q / p.tau_v
    gain = 1.0 if p.leak == "integral" else 1.0 - p.alpha * p.k_p
    A[:, N:, :N] = -gain * J0 / p.tau_u
    A[:, N:, N:] = -p.alpha / p.tau_u * torch.eye(n_L, dtype=dtype, device=device)
    return A


@torch.no_grad()
def stability(net: DFCNetwork, vs, params: ControllerParams):
    """Largest real eigenvalue per sample of -(JQ + αI) (Condition 3, eq. 11) and of the full
    PI system (negative: locally stable)."""
    J = net.jacobian(vs)
    JQ = J @ net.feedback_matrix()
    n_L = JQ.shape[1]
    cond3 = torch.linalg.eigvals(-(JQ + params.alpha * torch.eye(n_L, dtype=JQ.dtype,
                                                                  device=JQ.device))
                                 / params.tau_u)
    full = torch.linalg.eigvals(pi_system_matrix(net, vs, params))
    return cond3.real.max(dim=1).values, full.real.max(dim=1).values


@torch.no_grad()
def diagnostics(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, update, cfg,
                damping: float = 0.1, eig_samples: int = 16) -> dict:
    """Every diagnostic for one minibatch and the update the method computed for it."""
    params = ControllerParams.from_config(cfg)
    actual = list(update.gW) + list(update.gb)
    v_ff, r_ff = net.feedforward(x)
    out = {"condition1": float(condition1(net, x).mean()),
           "condition2": float(condition2_ratio(net, x).mean())}
    gW, gb = gn_update(net, x, y, cfg.loss, damping)
    out["angle_gn"] = angle_deg(actual, gW + gb)
    gW, gb = mn_update(net, x, y, cfg.loss, damping)
    out["angle_mn"] = angle_deg(actual, gW + gb)
    bp = backprop_update(net, x, y, cfg.loss)
    out["angle_bp"] = angle_deg(actual, bp.gW + bp.gb)
    if cfg.method in ("dfa", "bp"):
        out.update(angle_ssa=float("nan"), max_eig_condition3=float("nan"),
                   max_eig_pi=float("nan"))
        return out
    _, delta = output_target(r_ff[-1], y, cfg.loss, cfg.loss_reduction, cfg.target_stepsize)
    _, dv = lemma1_control(net, v_ff, delta, params.alpha_eff, r_ff=r_ff)
    v_ss, r_ss, deltas = ssa_state(net, x, dv, v_ff, r_ff, params.plasticity)
    gW, gb = signals_update(deltas, [x] + r_ss[:-1])
    out["angle_ssa"] = angle_deg(actual, gW + gb)
    k = min(eig_samples, len(x))
    cond3, full = stability(net, [v[:k] for v in v_ss], params)
    out["max_eig_condition3"] = float(cond3.mean())
    out["max_eig_pi"] = float(full.mean())
    return out
