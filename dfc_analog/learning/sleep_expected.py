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
2n_L × 2n_L Lyapunov solve (:func:`cayley_lyapunov`: batched products, and one n_L × n_L
inverse that also gives K).

J and J Σ² Jᵀ depend on the forward weights and the input only, Q enters after them
(:func:`sleep_jacobian`, :func:`expected_update_from_jacobian`). Within one epoch's X sleep
passes (and all pre-training passes) the forward weights do not change, so
:class:`FeedbackJacobians` keeps them per training sample and the passes after the first cost
J Q, Jᵀ Y and the Lyapunov solve only.
"""
from __future__ import annotations

import math

import torch

from dfc_analog.errors import DivergenceError
from dfc_analog.learning.forward import ForwardSettings, ForwardUpdate, forward_update
from dfc_analog.learning.sleep import SleepParams
from dfc_analog.model.network import DFCNetwork


def lyapunov(A: torch.Tensor, F: torch.Tensor, max_doublings: int = 60) -> torch.Tensor:
    """P with A P + P Aᵀ = F for batches (B, n, n): the stationary covariance of
    dx = -A x dt + noise of intensity F, unique when every eigenvalue of A has a positive real
    part. Solved by the Cayley transform with the shift h = tr A / n, R = (hI + A)⁻¹ by LU, and
    Smith's doubling (:func:`cayley_lyapunov`)."""
    n = A.shape[-1]
    h = (torch.diagonal(A, dim1=-2, dim2=-1).sum(-1) / n).clamp_min(1e-12)[:, None, None]
    R = torch.linalg.inv(h * torch.eye(n, dtype=A.dtype, device=A.device) + A)
    return cayley_lyapunov(h, R, F, max_doublings)


def cayley_lyapunov(h, R: torch.Tensor, F: torch.Tensor, max_doublings: int = 60) -> torch.Tensor:
    """P with A P + P Aᵀ = F (batches (B, n, n)) from the Cayley transform of A: a shift h > 0
    (a number or a (B, 1, 1) tensor) and R = (hI + A)⁻¹, which the caller may have cheaper than
    an inverse of A (:func:`commuting_block_inverse`). With A_d = R (hI - A) = 2h R - I and
    F_d = 2h R F Rᵀ the equation is P = A_d P A_dᵀ + F_d, whose series Σ_k A_d^k F_d A_d^kᵀ
    doubles its terms per step (P ← P + A_d P A_dᵀ, A_d ← A_d²) until the terms left,
    A_d^(2^k) P A_d^(2^k)ᵀ, are below the working precision relative to P; batched products only.
    A_d's eigenvalues (h - λ)/(h + λ) lie inside the unit circle exactly when A is stable, so the
    doubling's convergence is also the stability check (Condition 3 of the sleep dynamics):
    :class:`DivergenceError` when A_d^(2^k) does not vanish."""
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    Ad = 2 * h * R - eye
    P = (2 * h) * (R @ F @ R.transpose(1, 2))
    tol = torch.finfo(R.dtype).eps ** 0.25
    for _ in range(max_doublings):
        # after this update P sums the series' first 2^(k+1) terms; the rest, A_d^(2^(k+1)) P_∞
        # (…)ᵀ, is below ‖A_d‖⁴ ‖P_∞‖ (A_d = A_d^(2^k) now): stop once ‖A_d‖⁴ < ε
        norm = float(torch.linalg.matrix_norm(Ad).max())
        if not math.isfinite(norm):                 # a singular hI + A: A is not stable
            break
        P = torch.baddbmm(P, Ad @ P, Ad.transpose(1, 2))
        if norm < tol:
            return P
        Ad = Ad @ Ad
    raise DivergenceError("the linearised sleep-phase controller is unstable for some sample "
                          "(Condition 3 fails), so it has no stationary noise statistics; raise "
                          "alpha_fb.")


def commuting_block_inverse(M: torch.Tensor, a0, a1: float, b: float, c1: float,
                            d) -> torch.Tensor:
    """The inverse of Z = [[a0 I + a1 M, b I], [c1 M, d I]] for batches of M (B, n, n), with
    scalars or per-sample (B, 1, 1) tensors a0, d. Z's blocks are polynomials in M, so they
    commute, and Z⁻¹ = [[d I, -b I], [-c1 M, a0 I + a1 M]] D⁻¹ blockwise with the Schur
    determinant D = (a0 I + a1 M) d - b c1 M: one n × n inverse instead of a 2n × 2n one. The
    sleep controller's A (and hI + A) has this form with M = J Q."""
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    # without the singularity check's wait: a singular D gives non-finite entries, which the
    # caller's checks report (for the sleep controller, Z singular means A is unstable)
    Dinv = torch.linalg.inv_ex((a0 * d) * eye + (a1 * d - b * c1) * M)[0]
    MDinv = M @ Dinv
    return torch.cat([torch.cat([d * Dinv, -b * Dinv], 2),
                      torch.cat([-c1 * MDinv, a0 * Dinv + a1 * MDinv], 2)], 1)


@torch.no_grad()
def sleep_jacobian(net: DFCNetwork, x: torch.Tensor, p: SleepParams, out: tuple = None,
                   feedforward: tuple = None) -> tuple:
    """What the expected update needs of the forward weights and the input: J at the
    feed-forward state (B, n_L, Σ n_i) and J Σ² Jᵀ = σ² J_h J_hᵀ + σ_L² J_L J_Lᵀ (B, n_L, n_L;
    J_h the hidden layers' columns). Q does not enter, so both hold for every sleep pass until
    the forward weights change. ``out``: two tensors to write them into; ``feedforward``:
    ``net.feedforward(x)`` where the caller has it."""
    v_ff, r_ff = net.feedforward(x) if feedforward is None else feedforward
    B, n_L, N = x.shape[0], net.layer_sizes[-1], sum(net.layer_sizes[1:])
    J = torch.empty(B, n_L, N, dtype=net.dtype, device=net.device) if out is None else out[0]
    net.jacobian_blocks(v_ff, r_ff, out=J)
    hidden = N - n_L
    JSJ = torch.matmul(J[:, :, :hidden], J[:, :, :hidden].transpose(1, 2),
                       out=None if out is None else out[1]).mul_(p.sigma ** 2)
    if net.activations[-1] == "linear":          # J_L = I: J_L J_Lᵀ = I
        JSJ.diagonal(dim1=-2, dim2=-1).add_(p.sigma_output ** 2)
    else:
        JSJ.baddbmm_(J[:, :, hidden:], J[:, :, hidden:].transpose(1, 2),
                     alpha=p.sigma_output ** 2)
    return J, JSJ


@torch.no_grad()
def expected_update_from_jacobian(net: DFCNetwork, J: torch.Tensor, JSJ: torch.Tensor,
                                  p: SleepParams, loop_gain: torch.Tensor | None = None) -> list:
    """g_Q_i = E[v_A,i uᵀ] / σ̂² averaged over a minibatch whose J and J Σ² Jᵀ
    (:func:`sleep_jacobian`) are given: the Q-dependent part of :func:`expected_feedback_update`
    (module docstring). ``loop_gain``: J Q where the caller has it."""
    B, n_L, _ = J.shape
    Q = net.feedback_matrix()                                        # (Σ n_i, n_L)
    JQ = net.times_feedback(J) if loop_gain is None else loop_gain
    eye = torch.eye(n_L, dtype=JQ.dtype, device=JQ.device).expand(B, n_L, n_L)
    c = 1.0 if p.leak == "integral" else 1.0 - p.alpha * p.k_p
    # A = [[(I + k_p JQ)/τ_A, -I/τ_A], [c JQ/τ_u, α I/τ_u]]: blocks a0 I + a1 JQ, b I, c1 JQ, d I.
    # One inverse serves twice: R = (sI + A)⁻¹, s = 1/τ_A, gives K below and is the Cayley
    # transform of the Lyapunov solve (shift h = s).
    a0, a1, b, c1, d = 1 / p.tau_a, p.k_p / p.tau_a, -1 / p.tau_a, c / p.tau_u, p.alpha / p.tau_u
    b1, b2, s = p.k_p / p.tau_a, c / p.tau_u, 1 / p.tau_a
    R = commuting_block_inverse(JQ, a0 + s, a1, b, c1, d + s)
    # Bc = [β1 I; β2 I]; K = -(1/(2τ_A)) (R Bc)ᵀ
    K = (b1 * R[:, :, :n_L] + b2 * R[:, :, n_L:]).transpose(1, 2) * (-0.5 / p.tau_a)
    GK = JSJ @ K
    F = torch.cat([-b1 * GK, -b2 * GK], 1)                           # -Bc J Σ² Jᵀ K
    P = cayley_lyapunov(s, R, F + F.transpose(1, 2))
    # u = E_u x - k_p J η with E_u = [-k_p JQ, I], so for any M = [M_w, M_u]:
    # M E_uᵀ = M_u - k_p M_w JQᵀ, one fused product each
    JQt = JQ.transpose(1, 2)
    Cwu = torch.baddbmm(P[:, :n_L, n_L:], P[:, :n_L, :n_L], JQt, alpha=-p.k_p)
    Cwu.baddbmm_(K[:, :, :n_L].transpose(1, 2), JSJ, alpha=-p.k_p)
    Y = torch.baddbmm(K[:, :, n_L:] - (p.k_p / (2 * p.tau_a)) * eye, K[:, :, :n_L], JQt,
                      alpha=-p.k_p)                                   # E[η uᵀ] = Σ² Jᵀ Y
    # g = (Q Σ_b Cwu_b + Σ² Σ_b J_bᵀ Y_b) / (B σ̂²), σ² per layer on the rows of Jᵀ Y
    scale = 1.0 / (B * p.sigma_hat ** 2)
    YtJ = Y.flatten(0, 1).T @ J.flatten(0, 1)                         # (Σ_b J_bᵀ Y_b)ᵀ
    hidden = J.shape[2] - n_L
    YtJ[:, :hidden] *= p.sigma ** 2 * scale
    YtJ[:, hidden:] *= p.sigma_output ** 2 * scale
    g = torch.addmm(YtJ.T, Q, Cwu.sum(0), alpha=scale)
    if not bool(torch.isfinite(g).all()):
        raise DivergenceError("the expected sleep-phase update is not finite; raise alpha_fb.")
    return list(torch.split(g, net.layer_sizes[1:], dim=0))


@torch.no_grad()
def expected_feedback_update(net: DFCNetwork, x: torch.Tensor, p: SleepParams) -> list:
    """The expectation over the noise of eq. (12) of :func:`.sleep.feedback_update`'s update,
    g_Q_i = E[v_A,i uᵀ] / σ̂², for the linearised stationary sleep dynamics (module docstring),
    averaged over the minibatch ``x``. Uses J, Q, σ_i, τ_A, τ_u, α, k_p and the leak of ``p``;
    τ_v, dt and t_end do not enter (assumptions ii and iii)."""
    return expected_update_from_jacobian(net, *sleep_jacobian(net, x, p), p)


@torch.no_grad()
def single_phase_ssa_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor,
                            settings: ForwardSettings, p: SleepParams,
                            out: tuple = None) -> tuple:
    """One minibatch of DFC-SSA in the single-phase schedule: J once at the feed-forward state,
    used for Lemma 1's forward update (J Q) and for the expected feedback update at the same
    state; returns (ForwardUpdate, g_Q). ``out``: two tensors for J and J Σ² Jᵀ
    (:func:`sleep_jacobian`), kept by the caller across minibatches."""
    ff = net.feedforward(x)
    J, JSJ = sleep_jacobian(net, x, p, out, ff)
    JQ = net.times_feedback(J)
    upd = forward_update(net, x, y, settings, loop_gain=JQ, feedforward=ff)
    return upd, expected_update_from_jacobian(net, J, JSJ, p, JQ)


class FeedbackJacobians:
    """:func:`sleep_jacobian` of every sample of a training set, kept while the forward weights
    stay as they are (one epoch's X sleep passes; all pre-training passes): J is computed once
    per sample instead of once per pass. Holds n × n_L × (Σ n_i + n_L) numbers in the network's
    dtype and device (:meth:`nbytes`); computed in chunks of ``chunk`` samples."""

    def __init__(self, net: DFCNetwork, x: torch.Tensor, p: SleepParams, chunk: int = 1024):
        n, n_L, N = x.shape[0], net.layer_sizes[-1], sum(net.layer_sizes[1:])
        self.J = torch.empty(n, n_L, N, dtype=net.dtype, device=net.device)
        self.JSJ = torch.empty(n, n_L, n_L, dtype=net.dtype, device=net.device)
        for s in range(0, n, chunk):
            sleep_jacobian(net, x[s:s + chunk], p, out=(self.J[s:s + chunk], self.JSJ[s:s + chunk]))

    @staticmethod
    def nbytes(net: DFCNetwork, n: int) -> int:
        """Bytes the cache of ``n`` samples takes."""
        n_L = net.layer_sizes[-1]
        return n * n_L * (sum(net.layer_sizes[1:]) + n_L) * net.W[0].element_size()

    def update(self, net: DFCNetwork, idx: torch.Tensor, p: SleepParams) -> list:
        """:func:`expected_feedback_update` of the training samples ``idx`` with the current Q."""
        return expected_update_from_jacobian(net, self.J.index_select(0, idx),
                                             self.JSJ.index_select(0, idx), p)
