"""Dormand–Prince 5(4), fused: the method of torchdiffeq's ``dopri5``, with less memory traffic.

Same tableau, embedded error estimate, RMS error norm, step-size control (safety 0.9, growth at
most 10, shrink at most 0.2, exponent 1/5), initial step (Hairer, Nørsett & Wanner, II.4) and
quartic dense output as torchdiffeq 0.2.5, so both take the same steps. The difference is the
layout: the seven stage derivatives live in one (7, ...) buffer and every stage combination is one
matrix product over it, where torchdiffeq keeps the stage axis last and materialises a product per
stage. On the wake phase of a 784-256-256-256-10 network (a 100k-value state) that arithmetic cost
as much as the vector field; here it costs a fraction (bench/wake_phase.py, README).
"""
from __future__ import annotations

import math

import torch

from dfc_analog.errors import DivergenceError, StepLimitError

_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),   # the 5th-order solution
)
_ERROR = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
          -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)
_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2, 187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)
SAFETY, GROWTH, SHRINK, ORDER = 0.9, 10.0, 0.2, 5


def rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def dormand_prince(f, y0: torch.Tensor, times, rtol: float, atol: float, max_steps: int,
                   on_step=None, breakpoints=()):
    """Integrate dy/dt = f(t, y) from t = 0 and return the states at ``times`` (stacked).

    ``times`` is an increasing sequence of floats starting at 0. ``on_step(t0, dt, y1)`` is called
    after every accepted step [t0, t0 + dt] with its end state, at which f was evaluated last (the
    last step may end beyond ``times[-1]``: the state there is read from the dense output, as in
    torchdiffeq). ``breakpoints`` (increasing floats) are times where f is continuous but not
    smooth (a piecewise-linear forcing): no step crosses one, so that every step integrates a
    smooth f and its error estimate holds; without them the steps are exactly the above.
    """
    dtype, device = y0.dtype, y0.device
    coef = torch.zeros(7, 7, dtype=dtype, device=device)
    for i, row in enumerate(_A):
        coef[i, :len(row)] = torch.tensor(row, dtype=dtype)
    error_w = torch.tensor(_ERROR, dtype=dtype, device=device)
    mid_w = torch.tensor(_MID, dtype=dtype, device=device)
    k = torch.empty((7,) + tuple(y0.shape), dtype=dtype, device=device)
    flat = k.view(7, -1)

    def combine(y, weights, n):        # y + Σ_j weights_j k_j over the first n stages
        return torch.addmm(y.reshape(1, -1), weights[:n].reshape(1, n), flat[:n]).view_as(y)

    t, y = 0.0, y0
    k[0] = f(t, y)
    h = initial_step(f, y, k[0], rtol, atol, ORDER)
    out = [y0]
    attempts = 0
    interp = None
    breakpoints, stop = list(breakpoints), 0
    for t_out in times[1:]:
        while t_out > t:
            attempts += 1
            if attempts > max_steps:
                raise StepLimitError(
                    f"the dopri5 solver gave up after {max_steps} steps (max_steps): the dynamics "
                    "are too stiff or diverge; lower k_p or target_stepsize, or raise alpha.")
            if not t + h > t:
                raise DivergenceError(f"the dopri5 step size underflowed at t = {t:.4g}: the "
                                      "dynamics diverge; lower k_p or target_stepsize, or raise "
                                      "alpha.")
            while stop < len(breakpoints) and breakpoints[stop] <= t:
                stop += 1
            clipped = stop < len(breakpoints) and t + h > breakpoints[stop]
            step = breakpoints[stop] - t if clipped else h
            for i in range(1, 6):
                k[i] = f(t + _C[i] * step, combine(y, coef[i] * step, i))
            y1 = combine(y, coef[6] * step, 6)     # the 5th-order solution, also the last stage
            k[6] = f(t + step, y1)
            error = (error_w * step) @ flat
            tolerance = atol + rtol * torch.maximum(y.abs(), y1.abs()).reshape(-1)
            ratio = rms(error / tolerance)
            if not math.isfinite(ratio):
                h = step * SHRINK
                continue
            if ratio <= 1.0:
                if on_step is not None:
                    on_step(t, step, y1)
                t_next = breakpoints[stop] if clipped else t + step
                if t_next >= t_out:  # the step that reaches the output time: its dense output
                    interp = (t, step, _fit(y, y1, combine(y, mid_w * step, 7), k[0], k[6], step))
                t, y = t_next, y1
                k[0] = k[6]
            factor = GROWTH if ratio == 0 else min(GROWTH, max(SAFETY / ratio ** (1 / ORDER),
                                                               1.0 if ratio < 1 else SHRINK))
            h = max(h, step * factor) if clipped and ratio <= 1.0 else step * factor
        t0, dt, coeffs = interp
        out.append(_evaluate(coeffs, (t_out - t0) / dt))
    return torch.stack(out)


def initial_step(f, y0, f0, rtol, atol, order: int, cap_at_rest: bool = True) -> float:
    """Hairer, Nørsett & Wanner II.4, as torchdiffeq; ``order`` sets the exponent 1/order.

    From a state at rest (y0 = 0, as the wake phase's departure from eq. 2) the first guess
    h0 = 1e-6 says nothing of the problem's scale; ``cap_at_rest=False`` drops its cap 100 h0
    there, so that the step is set by the second-derivative estimate alone (torchdiffeq keeps
    it, and so does the fused dopri5, which takes torchdiffeq's steps)."""
    scale = atol + y0.abs() * rtol
    d0, d1 = rms(y0 / scale), rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = f(h0, y0 + h0 * f0)
    d2 = rms((f1 - f0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / order)
    return h1 if d0 < 1e-5 <= d1 and not cap_at_rest else min(100 * h0, h1)


def _fit(y0, y1, y_mid, f0, f1, dt):
    """Quartic through y0, y_mid, y1 with slopes f0, f1 (torchdiffeq's dense output)."""
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    return (y0, dt * f0, c, b, a)


def _evaluate(coeffs, x: float):
    total = coeffs[0] + x * coeffs[1]
    power = x
    for c in coeffs[2:]:
        power *= x
        total = total + power * c
    return total
