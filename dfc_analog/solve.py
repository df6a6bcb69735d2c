"""Solving the wake phase: adaptive and fixed-step torchdiffeq methods, and the authors' Euler.

:func:`simulate_wake` starts every sample at the feed-forward equilibrium of eq. (2) and returns a
:class:`WakeResult`: the final state, the time integrals of the eq. (5) plasticity (if asked), and,
when output times are given, a :class:`Trajectory` of every compartment and controller signal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchdiffeq import odeint

from .config import ADAPTIVE_SOLVERS, FIXED_SOLVERS
from .dynamics import ControllerParams, WakeDynamics
from .errors import ConfigError, DivergenceError
from .network import DFCNetwork

# Any state beyond this magnitude has left every regime the model describes.
STATE_LIMIT = 1e6


@dataclass(frozen=True)
class SolverSettings:
    """How a phase is integrated: ``method`` is a torchdiffeq method or ``'authors-euler'``."""

    method: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-6
    step_size: float = 0.005
    max_steps: int = 20000

    @classmethod
    def from_config(cls, cfg) -> "SolverSettings":
        return cls(cfg.solver, cfg.rtol, cfg.atol, cfg.step_size, cfg.max_steps)


@dataclass
class Trajectory:
    """Signals of a simulated phase on a time grid; the type both the ODE and SPICE paths return.

    ``t`` is (T,); every per-layer entry is a list over layers i = 1..L of (T, B, n_i) tensors;
    the controller signals are (T, B, n_L).
    """

    t: torch.Tensor
    soma: list
    basal: list
    apical: list
    rate: list
    u: torch.Tensor
    u_int: torch.Tensor
    error: torch.Tensor

    def numpy(self) -> dict:
        """Flat dict of numpy arrays (``soma1``, ``rate2``, ``u``, ...) for ``np.savez``."""
        out = {"t": self.t.cpu().numpy()}
        for name in ("soma", "basal", "apical", "rate"):
            for i, a in enumerate(getattr(self, name), start=1):
                out[f"{name}{i}"] = a.detach().cpu().numpy()
        for name in ("u", "u_int", "error"):
            out[name] = getattr(self, name).detach().cpu().numpy()
        return out


@dataclass
class WakeResult:
    """Outcome of one wake phase over a minibatch."""

    v: list                 # final somatic voltages v_i(T), (B, n_i) each
    u: torch.Tensor         # final control signal u(T), (B, n_L)
    u_int: torch.Tensor     # final integral state u_int(T)
    t_end: float
    d: list = field(default_factory=list)   # ∫ Δ_i dt per sample (if accumulated)
    M: list = field(default_factory=list)   # ∫ Δ_iᵀ r_{i-1} dt, i ≥ 2 (if accumulated)
    trajectory: Trajectory | None = None
    nfe: int = 0


def simulate_wake(net: DFCNetwork, x: torch.Tensor, r_star: torch.Tensor,
                  params: ControllerParams, solver: SolverSettings, t_end: float,
                  times: torch.Tensor | None = None, accumulate: bool = False,
                  proactive: bool = True) -> WakeResult:
    """Integrate eqs. (1) and (4) from the feed-forward state over [0, t_end].

    ``times`` (optional, increasing, within [0, t_end]) asks for a :class:`Trajectory` on that
    grid; without it only the final state is kept. ``accumulate`` carries the eq. (5) integrals
    in the state. ``proactive`` only concerns ``'authors-euler'``.
    """
    with torch.no_grad():
        v_ff, _ = net.feedforward(x)
        dyn = WakeDynamics(net, x, r_star, params, accumulate)
        y0 = dyn.initial_state(v_ff)
        if solver.method == "authors-euler":
            final, traj_states, t_grid = _authors_euler(dyn, y0, solver.step_size, t_end, times,
                                                        proactive)
        else:
            final, traj_states, t_grid = _torchdiffeq(dyn, y0, solver, t_end, times)
        _check_finite(final[: net.num_layers + 1], solver.method)
        L = net.num_layers
        u = final[L] + params.k_p * (r_star - net.phi(L - 1, final[L - 1]))
        result = WakeResult(v=list(final[:L]), u=u, u_int=final[L], t_end=t_end, nfe=dyn.nfe)
        if accumulate:
            result.d = list(final[L + 1: 2 * L + 1])
            result.M = list(final[2 * L + 1:])
        if times is not None:
            result.trajectory = build_trajectory(dyn, t_grid, traj_states)
        return result


def _torchdiffeq(dyn, y0, solver, t_end, times):
    dtype, device = y0[0].dtype, y0[0].device
    if solver.method in ADAPTIVE_SOLVERS:
        options = {"max_num_steps": solver.max_steps}
    elif solver.method in FIXED_SOLVERS:
        options = {"step_size": solver.step_size}
    else:
        raise ConfigError(f"unknown solver '{solver.method}'.")
    t = torch.tensor([0.0, t_end], dtype=dtype, device=device)
    if times is not None:
        t = torch.unique(torch.cat([times.to(dtype=dtype, device=device).reshape(-1), t]))
        if t[0] < 0 or t[-1] > t_end + 1e-12:
            raise ConfigError(f"trajectory times must lie within [0, {t_end}].")
    try:
        ys = odeint(dyn, y0, t, rtol=solver.rtol, atol=solver.atol, method=solver.method,
                    options=options)
    except AssertionError as exc:  # torchdiffeq signals step-size underflow and step limits so
        raise DivergenceError(
            f"the {solver.method} solver gave up ({exc}): the dynamics are too stiff or diverge; "
            "lower k_p or target_stepsize, raise alpha, or raise max_steps.") from None
    final = tuple(y[-1] for y in ys)
    return final, ys, t


def _authors_euler(dyn, y0, dt, t_end, times, proactive):
    """Forward Euler as the authors discretise eqs. (1), (4) (reference §1.3).

    One step k → k+1: the controller first (u_int[k+1] from e[k]; u[k+1] = u_int[k+1] + k_p e[k]),
    then the layers in order 1..L, each seeing the already updated rate of the layer below
    (instantaneous transmission) and the new control u[k+1] (proactive) or the old u[k].
    The eq. (5) integrals are left Riemann sums over the steps.
    """
    net, p, L = dyn.net, dyn.p, dyn.net.num_layers
    n_steps = int(round(t_end / dt))
    if n_steps < 1:
        raise ConfigError(f"step_size {dt} is longer than the simulated time {t_end}.")
    state = [y.clone() for y in y0]
    vs, u_int = state[:L], state[L]
    rs = [net.phi(i, v) for i, v in enumerate(vs)]
    u = torch.zeros_like(u_int)
    record = None
    if times is not None:
        t_grid = torch.arange(n_steps + 1, dtype=y0[0].dtype, device=y0[0].device) * dt
        wanted = torch.unique(torch.round(times.reshape(-1).cpu() / dt).long().clamp(0, n_steps))
        keep = set(wanted.tolist())
        record = {"k": [], "states": []}
    for k in range(n_steps + 1):
        if record is not None and k in keep:
            record["k"].append(k)
            record["states"].append([v.clone() for v in vs] + [u_int.clone()])
        if k == n_steps:
            break
        e = dyn.r_star - rs[-1]
        leak = u_int if p.leak == "integral" else u
        u_int = u_int + dt / p.tau_u * (e - p.alpha * leak)
        u_new = u_int + p.k_p * e
        u_apical = u_new if proactive else u
        u = u_new
        r_prev = dyn.x
        for i in range(L):
            v_basal = dyn.basal_1 if i == 0 else net.basal(i, r_prev)
            if dyn.accumulate:  # integrand at step k, with the state before the update
                basal_k = dyn.basal_1 if i == 0 else net.basal(i, rs[i - 1])
                delta = dyn.plasticity_signal(i, vs[i], basal_k)
                state[L + 1 + i] += dt * delta
                if i > 0:
                    state[2 * L + i] += dt * (delta.T @ rs[i - 1])
            vs[i] = vs[i] + dt / p.tau_v * (u_apical @ net.Q[i].T + v_basal - vs[i])
            r_prev = net.phi(i, vs[i])
        rs = [net.phi(i, v) for i, v in enumerate(vs)]
        dyn.nfe += 1
    state[:L] = vs
    state[L] = u_int
    traj = None
    t_out = None
    if record is not None:
        t_out = t_grid[record["k"]]
        traj = tuple(torch.stack([s[j] for s in record["states"]]) for j in range(L + 1))
    return tuple(state), traj, t_out


def build_trajectory(dyn: WakeDynamics, t: torch.Tensor, states) -> Trajectory:
    """Derive every compartment and controller signal from the states on a time grid."""
    net, L = dyn.net, dyn.net.num_layers
    T, B = t.shape[0], dyn.x.shape[0]
    flat = [s.reshape(T * B, -1) for s in states[: L + 1]]
    x_rep = dyn.x.repeat(T, 1)
    r_star = dyn.r_star.repeat(T, 1)
    rs = [net.phi(i, v) for i, v in enumerate(flat[:L])]
    basal = [net.basal(i, x_rep if i == 0 else rs[i - 1]) for i in range(L)]
    e = r_star - rs[-1]
    u = flat[L] + dyn.p.k_p * e
    apical = [u @ net.Q[i].T for i in range(L)]

    def shape(a):
        return a.reshape(T, B, -1)

    return Trajectory(t=t, soma=[shape(v) for v in flat[:L]], basal=[shape(a) for a in basal],
                      apical=[shape(a) for a in apical], rate=[shape(r) for r in rs],
                      u=shape(u), u_int=shape(flat[L]), error=shape(e))


def _check_finite(tensors, method: str) -> None:
    worst = max(float(t.abs().max()) if t.numel() else 0.0 for t in tensors)
    if not np.isfinite(worst) or worst > STATE_LIMIT:
        fixed = "" if method in ADAPTIVE_SOLVERS else \
            f"use a smaller step_size (the {method} step must resolve τ_v), or "
        raise DivergenceError(
            f"the network-plus-controller dynamics diverged (largest state magnitude {worst:.3g}); "
            f"{fixed}lower k_p or target_stepsize, raise alpha, or use feedback weights that meet "
            "Condition 3.")
