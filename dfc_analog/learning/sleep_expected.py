"""The sleep phase's expected update in closed form (eqs. 12-13 averaged over the noise).

The simulated sleep phase (:mod:`.sleep`) estimates ⟨v_A uᵀ⟩ of eq. (13) from one noise path of
eq. (12). Here the expectation over the noise is taken analytically, per sample, for the
linearised network-plus-controller dynamics at stationarity (derivation and assumptions:
docs/expected-sleep.md): (i) linearisation around the feed-forward state, Δr_L = J Δv (small σ);
(ii) τ_v ≪ τ_A, τ_u: the soma follows its apical input at once, e = -J v_A; (iii)
stationarity: the phase lasts long against the controller's relaxation. The apical filter is kept
exactly: v_A = Q w + η with the filtered control τ_A dw = (u - w) dt and the filtered noise
τ_A dη = -η dt + Σ dW, whose covariance is S = Σ²/(2τ_A). The controller state x = (w, u_int)
(2 n_L numbers) then obeys the linear system driven by the coloured noise J η

    dx/dt = -A x - Bc J η,   u = E_u x - k_p J η,   E_u = [-k_p JQ, I],
    A = [[(I + k_p JQ)/τ_A, -I/τ_A], [c JQ/τ_u, α I/τ_u]],   Bc = [k_p I/τ_A; c I/τ_u],

with c = 1 for the leak on the integral (eq. 4, τ_u du_int/dt = e - α u_int) and c = 1 - α k_p for
the leak on the whole control (τ_u du_int/dt = e - α u). Its stationary moments are

    E[η xᵀ] = Σ² Jᵀ K,  K = -(1/(2τ_A)) ((I/τ_A + A)⁻¹ Bc)ᵀ
    A P + P Aᵀ = -(Bc J Σ² Jᵀ K + Kᵀ J Σ² Jᵀ Bcᵀ)                 (P = E[x xᵀ], Lyapunov)
    E[w uᵀ]    = E_w P E_uᵀ - k_p E_w Kᵀ J Σ² Jᵀ,   E_w = [I, 0]
    E[η uᵀ]    = Σ² Jᵀ (K E_uᵀ - k_p/(2τ_A) I)
    E[v_A uᵀ]  = Q E[w uᵀ] + E[η uᵀ],

the last of which, averaged over the minibatch and divided by σ̂² = max(σ, 0.01)², is returned:
the format and scale of :func:`.sleep.feedback_update`, whose time average it is in the limit of
a long phase. Per sample it costs J (one Jacobian), a few n_L × n_L products and one batched
2n_L × 2n_L Lyapunov solve (:func:`lyapunov`, batched products only).
"""
from __future__ import annotations

import torch

from dfc_analog.errors import DivergenceError
from dfc_analog.learning.sleep import SleepParams
from dfc_analog.model.network import DFCNetwork


def lyapunov(A: torch.Tensor, F: torch.Tensor, max_doublings: int = 60) -> torch.Tensor:
    """P with A P + P Aᵀ = F for batches (B, n, n): the stationary covariance of
    dx = -A x dt + noise of intensity F, unique when every eigenvalue of A has a positive real
    part. Solved by the Cayley transform and Smith's doubling, batched products only: with
    h = tr A / n, A_d = (hI + A)⁻¹ (hI - A) and F_d = 2h (hI + A)⁻¹ F (hI + A)⁻ᵀ the equation is
    P = A_d P A_dᵀ + F_d, whose series Σ_k A_d^k F_d A_d^kᵀ doubles its terms per step
    (P ← P + A_d P A_dᵀ, A_d ← A_d²). A_d's eigenvalues (h - λ)/(h + λ) lie inside the unit
    circle exactly when A is stable, so the doubling's convergence is also the stability check
    (Condition 3 of the sleep dynamics): :class:`DivergenceError` when A_d^(2^k) does not vanish."""
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    h = (torch.diagonal(A, dim1=-2, dim2=-1).sum(-1) / n).clamp_min(1e-12)[:, None, None]
    lu = torch.linalg.lu_factor(h * eye + A)
    Ad = torch.linalg.lu_solve(*lu, h * eye - A)
    X = torch.linalg.lu_solve(*lu, F)                                # (hI + A)⁻¹ F
    P = 2 * h * torch.linalg.lu_solve(*lu, X.transpose(1, 2)).transpose(1, 2)
    tol = torch.finfo(A.dtype).eps
    for _ in range(max_doublings):
        P = P + Ad @ P @ Ad.transpose(1, 2)
        Ad = Ad @ Ad
        if float(torch.linalg.matrix_norm(Ad).max()) < tol:
            return P
    raise DivergenceError("the linearised sleep-phase controller is unstable for some sample "
                          "(Condition 3 fails), so it has no stationary noise statistics; raise "
                          "alpha_fb.")


@torch.no_grad()
def expected_feedback_update(net: DFCNetwork, x: torch.Tensor, p: SleepParams) -> list:
    """The expectation over the noise of eq. (12) of :func:`.sleep.feedback_update`'s update,
    g_Q_i = E[v_A,i uᵀ] / σ̂², for the linearised stationary sleep dynamics (module docstring),
    averaged over the minibatch ``x``. Uses J, Q, σ_i, τ_A, τ_u, α, k_p and the leak of ``p``;
    τ_v, dt and t_end do not enter (assumptions ii and iii)."""
    B = x.shape[0]
    v_ff, _ = net.feedforward(x)
    blocks = net.jacobian_blocks(v_ff)                               # J_i: (B, n_L, n_i)
    sigma2 = [p.sigma ** 2] * (net.num_layers - 1) + [p.sigma_output ** 2]
    JQ = sum(J_i @ Q_i for J_i, Q_i in zip(blocks, net.Q))           # (B, n_L, n_L)
    JSJ = sum(s2 * (J_i @ J_i.transpose(1, 2)) for J_i, s2 in zip(blocks, sigma2))  # J Σ² Jᵀ
    n_L = JQ.shape[1]
    eye = torch.eye(n_L, dtype=JQ.dtype, device=JQ.device).expand(B, n_L, n_L)
    c = 1.0 if p.leak == "integral" else 1.0 - p.alpha * p.k_p
    A = torch.cat([torch.cat([(eye + p.k_p * JQ) / p.tau_a, -eye / p.tau_a], 2),
                   torch.cat([(c / p.tau_u) * JQ, (p.alpha / p.tau_u) * eye], 2)], 1)
    Bc = torch.cat([(p.k_p / p.tau_a) * eye, (c / p.tau_u) * eye], 1)  # (B, 2n_L, n_L)
    K = torch.linalg.solve(torch.eye(2 * n_L, dtype=JQ.dtype, device=JQ.device) / p.tau_a + A,
                           Bc).transpose(1, 2) * (-0.5 / p.tau_a)     # (B, n_L, 2n_L)
    F = Bc @ JSJ @ K
    P = lyapunov(A, -(F + F.transpose(1, 2)))                        # (B, 2n_L, 2n_L)
    E_u = torch.cat([-p.k_p * JQ, eye], 2)                           # u = E_u x - k_p J η
    Cwu = P[:, :n_L] @ E_u.transpose(1, 2) - p.k_p * K[:, :, :n_L].transpose(1, 2) @ JSJ
    Y = K @ E_u.transpose(1, 2) - (p.k_p / (2 * p.tau_a)) * eye       # E[η uᵀ] = Σ² Jᵀ Y
    Cwu = Cwu.sum(0)
    g = [(Q_i @ Cwu + s2 * torch.einsum("bkn,bkm->nm", J_i, Y)) / (B * p.sigma_hat ** 2)
         for J_i, Q_i, s2 in zip(blocks, net.Q, sigma2)]             # E[η uᵀ] = Σ² Jᵀ Y
    if not all(bool(torch.isfinite(g_i).all()) for g_i in g):
        raise DivergenceError("the expected sleep-phase update is not finite; raise alpha_fb.")
    return g
