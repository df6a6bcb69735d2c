"""Rosenbrock-W method ROS34PW2 for the wake phase: the fast controller loop taken implicitly.

With k_p > 0 the proportional path u = u_int + k_p e closes a loop through the output layer whose
time constant is a fraction of τ_v; every explicit method (dopri5 included) must keep its step
below that loop's stability limit, whatever its tolerance, and so takes ~80 steps for 20 τ_u.
A Rosenbrock-W method solves one linear system (I - hγA) k = b per stage, with A any approximation
of the Jacobian: its order does not depend on A (Hairer & Wanner, *Solving ODEs II*, IV.7), only
its stability does. Here A is the part of the Jacobian of eqs. (1) and (4) that makes the problem
stiff: the somatic leak -v/τ_v and the controller loop through Q (see
:meth:`dfc_analog.dynamics.WakeDynamics.stiff_part`). It has rank n_L beyond the diagonal, so the
solve is an n_L x n_L system per sample (Woodbury identity), and the step is set by accuracy alone.

ROS34PW2 (Rang & Angermann, BIT 45, 2005): 4 stages, order 3, embedded order 2, stiffly accurate,
L-stable. The ODE must be autonomous (the wake dynamics are). Output times are read from a cubic
Hermite interpolant on the accepted steps, which matches the method's order.
"""
from __future__ import annotations

import math

import torch

from .dormand_prince import SAFETY, GROWTH, SHRINK, initial_step, rms
from .errors import DivergenceError

GAMMA = 0.4358665215084590
_ALPHA = ((), (0.87173304301691801,), (0.84457060015369423, -0.11299064236484185),
          (0.0, 0.0, 1.0))
_GAMMA = ((), (-0.87173304301691801,), (-0.90338057013044082, 0.054180672388095326),
          (0.24212380706095346, -1.2232505839045147, 0.54526025533510214))
_B = (0.24212380706095346, -1.2232505839045147, 1.5452602553351020, 0.4358665215084590)
_B_EMBEDDED = (0.37810903145819369, -0.096042292212423178, 0.5, 0.2179332607542295)
ORDER = 3           # of the embedded pair's lower member + 1: step-size exponent 1/ORDER


def rosenbrock_w(f, stiff, y0: torch.Tensor, times, rtol: float, atol: float, max_steps: int,
                 on_step=None):
    """Integrate the autonomous dy/dt = f(t, y) from t = 0; return the states at ``times``.

    ``stiff(y, c)`` returns ``(solve, apply)`` for the approximate Jacobian A at ``y``:
    ``solve(b)`` gives (I - cA)⁻¹ b and ``apply(w)`` gives A w. ``on_step(t0, dt, y1)`` is called
    after every accepted step [t0, t0 + dt], right after f was evaluated at its end state ``y1``;
    steps never pass ``times[-1]``.
    """
    t_end = float(times[-1])
    t, y = 0.0, y0
    f0 = f(t, y)
    h = min(initial_step(f, y, f0, rtol, atol, ORDER), t_end)
    out = [y0]
    pending = list(times[1:])
    attempts = 0
    while pending:
        attempts += 1
        if attempts > max_steps:
            raise DivergenceError(
                f"the rosenbrock solver gave up after {max_steps} steps (max_steps): the dynamics "
                "are too stiff or diverge; lower k_p or target_stepsize, or raise alpha.")
        h = min(h, t_end - t)
        if not t + h > t:
            raise DivergenceError(f"the rosenbrock step size underflowed at t = {t:.4g}: the "
                                  "dynamics diverge; lower k_p or target_stepsize, or raise alpha.")
        solve, apply = stiff(y, GAMMA * h)
        k = [solve(h * f0)]
        for i in range(1, 4):
            y_stage = y
            for a, k_j in zip(_ALPHA[i], k):
                if a:
                    y_stage = y_stage + a * k_j
            coupling = sum(g * k_j for g, k_j in zip(_GAMMA[i], k))
            k.append(solve(h * (f(t + h, y_stage) + apply(coupling))))
        y1 = y + sum(b * k_i for b, k_i in zip(_B, k))
        error = sum((b - e) * k_i for b, e, k_i in zip(_B, _B_EMBEDDED, k))
        ratio = rms(error / (atol + rtol * torch.maximum(y.abs(), y1.abs())))
        if not math.isfinite(ratio):
            h *= SHRINK
            continue
        if ratio <= 1.0:
            f1 = f(t + h, y1)
            if on_step is not None:
                on_step(t, h, y1)
            while pending and pending[0] <= t + h * (1 + 1e-12):
                out.append(_hermite(y, y1, f0, f1, h, (pending.pop(0) - t) / h))
            t, y, f0 = t + h, y1, f1
        h *= GROWTH if ratio == 0 else min(GROWTH, max(SAFETY / ratio ** (1 / ORDER),
                                                       1.0 if ratio < 1 else SHRINK))
    return torch.stack(out)


def _hermite(y0, y1, f0, f1, h: float, s: float):
    """Cubic Hermite interpolant through (y0, f0) and (y1, f1) at fraction ``s`` of the step."""
    s = min(max(s, 0.0), 1.0)
    h00, h10 = (1 + 2 * s) * (1 - s) ** 2, s * (1 - s) ** 2
    h01, h11 = s * s * (3 - 2 * s), s * s * (s - 1)
    return h00 * y0 + h01 * y1 + h * (h10 * f0 + h11 * f1)
