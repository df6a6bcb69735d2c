"""Rosenbrock-W method ROS34PW2 for the wake phase: the fast controller loop taken implicitly.

With k_p > 0 the proportional path u = u_int + k_p e closes a loop through the output layer whose
time constant is a fraction of τ_v; every explicit method (dopri5 included) must keep its step
below that loop's stability limit, whatever its tolerance, and so takes ~80 steps for 20 τ_u.
A Rosenbrock-W method solves one linear system (I - hγA) k = b per stage, with A any approximation
of the Jacobian: its order does not depend on A (Hairer & Wanner, *Solving ODEs II*, IV.7), only
its stability does. Here A is the Jacobian of eqs. (1) and (4) with the slopes φ' frozen at the
feed-forward state (see :meth:`dfc_analog.model.dynamics.WakeDynamics.stiff_part`): the somatic leak,
the feed-forward coupling between layers and the controller loop through Q. It is lower
block-triangular plus rank n_L, so a stage solve is a forward substitution through the layers and
an n_L x n_L system per sample (Woodbury identity), and the step is set by accuracy alone.

ROS34PW2 (Rang & Angermann, BIT 45, 2005): 4 stages, order 3, embedded order 2, stiffly accurate,
L-stable. The ODE must be autonomous (the wake dynamics are). Output times are read from a cubic
Hermite interpolant on the accepted steps, which matches the method's order.
"""
from __future__ import annotations

import math

import torch

from dfc_analog.solvers.dormand_prince import SAFETY, GROWTH, SHRINK, initial_step, rms
from dfc_analog.errors import DivergenceError, StepLimitError

GAMMA = 0.4358665215084590
_ALPHA = ((), (0.87173304301691801,), (0.84457060015369423, -0.11299064236484185),
          (0.0, 0.0, 1.0))
_GAMMA = ((), (-0.87173304301691801,), (-0.90338057013044082, 0.054180672388095326),
          (0.24212380706095346, -1.2232505839045147, 0.54526025533510214))
_B = (0.24212380706095346, -1.2232505839045147, 1.5452602553351020, 0.4358665215084590)
_B_EMBEDDED = (0.37810903145819369, -0.096042292212423178, 0.5, 0.2179332607542295)
ORDER = 3           # of the embedded pair's lower member + 1: step-size exponent 1/ORDER
# A step that would end less than this fraction of itself before the last output time is
# stretched to end there (its error is checked as any step's): no sliver step at the end.
STRETCH = 0.1


def _transformed():
    """The tableau in the variables u_i = Σ_j Γ_ij k_j (Hairer & Wanner IV.7.25), where no
    product with A is needed: (I/(hγ) - A) u_i = f(y + Σ a_ij u_j) + Σ (c_ij/h) u_j,
    y1 = y + Σ m_i u_i, error Σ e_i u_i. Returns a (4x4), c (4x4), m, e as float64 tensors."""
    G = torch.zeros(4, 4, dtype=torch.float64)
    A = torch.zeros(4, 4, dtype=torch.float64)
    for i in range(4):
        G[i, i] = GAMMA
        G[i, :i] = torch.tensor(_GAMMA[i], dtype=torch.float64)
        A[i, :i] = torch.tensor(_ALPHA[i], dtype=torch.float64)
    G_inv = torch.linalg.inv(G)
    b = torch.tensor(_B, dtype=torch.float64)
    error = b - torch.tensor(_B_EMBEDDED, dtype=torch.float64)
    return A @ G_inv, torch.diag(1.0 / torch.diagonal(G)) - G_inv, b @ G_inv, error @ G_inv


_A_T, _C_T, _M_T, _E_T = _transformed()


def rosenbrock_w(f, stiff, y0: torch.Tensor, times, rtol: float, atol: float, max_steps: int,
                 on_step=None):
    """Integrate the autonomous dy/dt = f(t, y) from t = 0; return the states at ``times``.

    ``f(t, y, out)`` writes dy/dt into ``out``. ``stiff(y, c)`` returns ``solve``, with
    solve(b, scale, out) = (I - cA)⁻¹ (scale · b) for the approximate Jacobian A at ``y``, written
    into ``out``. ``on_step(t0, dt, y1)`` is called after every accepted step [t0, t0 + dt],
    right after f was evaluated at its end state ``y1``; steps never pass ``times[-1]``. The
    work tensors are allocated once: a step allocates nothing of the state's size but the
    error estimate.
    """
    dtype, device = y0.dtype, y0.device
    a, c = _A_T.to(dtype=dtype, device=device), _C_T.to(dtype=dtype, device=device)
    m, e = _M_T.to(dtype=dtype, device=device), _E_T.to(dtype=dtype, device=device)
    u = torch.empty((4,) + tuple(y0.shape), dtype=dtype, device=device)
    flat = u.view(4, -1)
    stage, rhs, f_stage, y_next, f_next, scaled = (torch.empty_like(y0) for _ in range(6))
    y, f0 = y0.clone(), torch.empty_like(y0)

    def combine(base, weights, n, out):  # out = base + Σ_j weights_j u_j over the first n stages
        return torch.addmm(base.view(1, -1), weights[:n].view(1, n), flat[:n],
                           out=out.view(1, -1)).view_as(y0)

    t_end = float(times[-1])
    t = 0.0
    f(t, y, out=f0)
    h = min(initial_step(f, y, f0, rtol, atol, ORDER, cap_at_rest=False), t_end)
    out = [y0]
    pending = list(times[1:])
    attempts = 0
    while pending:
        attempts += 1
        if attempts > max_steps:
            raise StepLimitError(
                f"the rosenbrock solver gave up after {max_steps} steps (max_steps): the dynamics "
                "are too stiff or diverge; lower k_p or target_stepsize, or raise alpha.")
        if t + h * (1.0 + STRETCH) >= t_end:
            h = t_end - t
        if not t + h > t:
            raise DivergenceError(f"the rosenbrock step size underflowed at t = {t:.4g}: the "
                                  "dynamics diverge; lower k_p or target_stepsize, or raise alpha.")
        solve = stiff(y, GAMMA * h)
        solve(f0, GAMMA * h, out=u[0])
        for i in range(1, 4):
            f(t + h, combine(y, a[i], i, stage), out=f_stage)
            solve(combine(f_stage, c[i] / h, i, rhs), GAMMA * h, out=u[i])
        y1 = combine(y, m, 4, y_next)
        error = (e @ flat).view_as(y0)
        torch.maximum(y.abs(), y1.abs(), out=scaled).mul_(rtol).add_(atol)
        ratio = rms(error.div_(scaled))
        if not math.isfinite(ratio):
            h *= SHRINK
            continue
        if ratio <= 1.0:
            f(t + h, y1, out=f_next)
            if on_step is not None:
                on_step(t, h, y1)
            while pending and pending[0] <= t + h * (1 + 1e-12):
                out.append(_hermite(y, y1, f0, f_next, h, (pending.pop(0) - t) / h))
            t = t + h
            y, y_next, f0, f_next = y1, y, f_next, f0
        h *= GROWTH if ratio == 0 else min(GROWTH, max(SAFETY / ratio ** (1 / ORDER),
                                                       1.0 if ratio < 1 else SHRINK))
    return torch.stack(out)


def _hermite(y0, y1, f0, f1, h: float, s: float):
    """Cubic Hermite interpolant through (y0, f0) and (y1, f1) at fraction ``s`` of the step."""
    s = min(max(s, 0.0), 1.0)
    h00, h10 = (1 + 2 * s) * (1 - s) ** 2, s * (1 - s) ** 2
    h01, h11 = s * s * (3 - 2 * s), s * s * (s - 1)
    return h00 * y0 + h01 * y1 + h * (h10 * f0 + h11 * f1)
