"""Solving the wake phase: adaptive and fixed-step torchdiffeq methods, and the authors' Euler.

:func:`simulate_wake` starts every sample at the feed-forward equilibrium of eq. (2) and returns a
:class:`WakeResult`: the final state, the time integrals of the eq. (5) plasticity (if asked), and,
when output times are given, a :class:`Trajectory` of every compartment and controller signal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import math

import torch
from torchdiffeq import odeint

from dfc_analog.config.options import ADAPTIVE_SOLVERS, FIXED_SOLVERS
from dfc_analog.solvers.dormand_prince import dormand_prince
from dfc_analog.solvers.rosenbrock import rosenbrock_w
from dfc_analog.model.dynamics import (ControllerParams, PlasticityIntegral, WakeDynamics,
                                       plasticity_signals)
from dfc_analog.errors import ConfigError, DivergenceError
from dfc_analog.model.network import DFCNetwork
from dfc_analog.model.trajectory import Trajectory

# Any state beyond this magnitude has left every regime the model describes.
STATE_LIMIT = 1e6


@dataclass(frozen=True)
class SolverSettings:
    """How a phase is integrated: ``'rosenbrock'`` (ROS34PW2), ``'dopri5'`` (fused), a torchdiffeq
    method, or ``'authors-euler'``."""

    method: str = "rosenbrock"
    rtol: float = 1e-3      # relative to the departure from the feed-forward state
    atol: float = 1e-4      # in units of the output nudge max|δ_L|
    step_size: float = 0.005
    max_steps: int = 20000

    @classmethod
    def from_config(cls, cfg) -> "SolverSettings":
        return cls(method=cfg.solver, rtol=cfg.rtol, atol=cfg.atol, step_size=cfg.step_size,
                   max_steps=cfg.max_steps)


@dataclass
class WakeResult:
    """Outcome of one wake phase over a minibatch."""

    v: list                 # final somatic voltages v_i(T), (B, n_i) each
    u: torch.Tensor         # final control signal u(T), (B, n_L)
    u_int: torch.Tensor     # final integral state u_int(T)
    t_end: float
    d: list = field(default_factory=list)   # ∫ Δ_i dt per sample (if accumulated)
    M: list = field(default_factory=list)   # ∫ Δ_iᵀ r_{i-1} dt, i ≥ 2 (if accumulated)
    delta: list = field(default_factory=list)  # Δ_i(T) per sample (if asked, ``steady``)
    pre: list = field(default_factory=list)    # r_{i-1}(T), r_0 = x (if asked, ``steady``)
    trajectory: Trajectory | None = None
    nfe: int = 0


def simulate_wake(net: DFCNetwork, x: torch.Tensor, r_star: torch.Tensor,
                  params: ControllerParams, solver: SolverSettings, t_end: float,
                  times: torch.Tensor | None = None, accumulate: bool = False,
                  steady: bool = False, nudge: torch.Tensor | None = None) -> WakeResult:
    """Integrate eqs. (1) and (4) from the feed-forward state over [0, t_end].

    ``times`` (optional, increasing, within [0, t_end]) asks for a :class:`Trajectory` on that
    grid; without it only the final state is kept. ``accumulate`` integrates the eq. (5) signal
    along the way (:class:`~dfc_analog.model.dynamics.PlasticityIntegral`); ``steady`` keeps it
    at t_end (for DFC-SS), both formed from the departures, without cancellation. ``nudge``: δ
    of eq. (3) where the caller has it (see :class:`WakeDynamics`). The method is
    ``SOLVERS[solver.method]``.
    """
    if solver.method not in SOLVERS:
        raise ConfigError(f"unknown solver '{solver.method}'.")
    if solver.method not in ADAPTIVE_SOLVERS and t_end / solver.step_size > solver.max_steps:
        raise ConfigError(f"the fixed-step solver '{solver.method}' would take t_end / step_size "
                          f"= {t_end / solver.step_size:.3g} steps, more than max_steps "
                          f"{solver.max_steps}: raise step_size or max_steps.")
    with torch.no_grad():
        v_ff, _ = net.feedforward(x)
        dyn = WakeDynamics(net, x, r_star, params, v_ff, nudge)
        integral = PlasticityIntegral(dyn, t_end) if accumulate else None
        y0 = dyn.initial_state()
        y_end, states, t_grid = SOLVERS[solver.method](dyn, y0, t_end, times, solver, integral)
        _check_finite(dyn.absolute(y_end), solver.method)
        vs, u_int = dyn.split(y_end)
        u = u_int + params.k_p * (r_star - net.phi(net.num_layers - 1, vs[-1]))
        result = WakeResult(v=list(vs), u=u, u_int=u_int, t_end=t_end, nfe=dyn.nfe)
        if integral is not None:
            result.d, result.M = integral.d, integral.M
        if steady:
            delta, result.pre = plasticity_signals(dyn, y_end)
            result.delta = list(net.split_layers(delta))
        if times is not None:
            result.trajectory = build_trajectory(dyn, t_grid, states)
        return result


# Every solver: (dyn, y0, t_end, times, settings, integral) -> (y(t_end), states on the grid,
# grid). ``integral`` (a PlasticityIntegral or None) is fed the accepted steps and finished.

def _dormand_prince(dyn, y0, t_end, times, solver, integral):
    t_grid = _output_times(times, t_end, y0)
    states = dormand_prince(dyn, y0, t_grid.tolist(), solver.rtol, solver.atol, solver.max_steps,
                            None if integral is None else integral.add_step)
    if integral is not None:
        integral.finish(states[-1])
    return states[-1], states, t_grid


def _rosenbrock(dyn, y0, t_end, times, solver, integral):
    t_grid = _output_times(times, t_end, y0)
    states = rosenbrock_w(dyn, dyn.stiff_part, y0, t_grid.tolist(), solver.rtol, solver.atol,
                          solver.max_steps, None if integral is None else integral.add_step)
    if integral is not None:
        integral.finish(states[-1])
    return states[-1], states, t_grid


def _torchdiffeq(dyn, y0, t_end, times, solver, integral):
    if integral is not None:
        dyn.attach(integral, fixed_grid=solver.method in FIXED_SOLVERS)
    if solver.method in ADAPTIVE_SOLVERS:
        options = {"max_num_steps": solver.max_steps}
    else:
        options = {"step_size": solver.step_size}
    t = _output_times(times, t_end, y0)
    try:
        ys = odeint(dyn, y0, t, rtol=solver.rtol, atol=solver.atol,
                    method=solver.method.removeprefix("torchdiffeq-"), options=options)
    except AssertionError as exc:  # torchdiffeq signals step-size underflow and step limits so
        raise DivergenceError(
            f"the {solver.method} solver gave up ({exc}): the dynamics are too stiff or diverge; "
            "lower k_p or target_stepsize, raise alpha, or raise max_steps.") from None
    if integral is not None:
        integral.finish(ys[-1])
    return ys[-1], ys, t


def _output_times(times, t_end, y0) -> torch.Tensor:
    """0, the requested trajectory times and t_end, sorted and unique."""
    t = torch.tensor([0.0, t_end], dtype=torch.float64)
    if times is not None:
        t = torch.unique(torch.cat([times.detach().cpu().double().reshape(-1), t]))
        if t[0] < 0 or t[-1] > t_end * (1 + 1e-9):
            raise ConfigError(f"trajectory times must lie within [0, {t_end}].")
    return t.to(dtype=y0.dtype, device=y0.device)


def _authors_euler(dyn, y0, t_end, times, solver, integral):
    """Forward Euler as the authors discretise eqs. (1), (4) (reference §1.3).

    One step k → k+1: the controller first (u_int[k+1] from e[k]; u[k+1] = u_int[k+1] + k_p e[k]),
    then the layers in order 1..L, each seeing the already updated rate of the layer below
    (instantaneous transmission) and the new control u[k+1] (proactive, as the authors).
    The eq. (5) integral is the left Riemann sum over the steps, as the authors sum it.
    """
    net, p, dt = dyn.net, dyn.p, solver.step_size
    n_steps = int(round(t_end / dt))
    if n_steps < 1:
        raise ConfigError(f"step_size {dt} is longer than the simulated time {t_end}.")
    v0, u0 = dyn.split(y0)
    vs, u_int = [v.clone() for v in v0], u0.clone()
    u = torch.zeros_like(u_int)
    keep = set()
    if times is not None:
        wanted = torch.round(times.reshape(-1).cpu() / dt).long().clamp(0, n_steps)
        keep = set(wanted.tolist())
    recorded, steps = [], []
    for k in range(n_steps + 1):
        y = dyn.pack(vs, u_int) if (k in keep or integral is not None or k == n_steps) else None
        if k in keep:
            recorded.append(y)
            steps.append(k)
        if k == n_steps:
            break
        if integral is not None:
            integral.add_rectangle(y, dt)
        e = dyn.r_star - net.phi(net.num_layers - 1, vs[-1])
        leak = u_int if p.leak == "integral" else u
        u_int = u_int + dt / p.tau_u * (e - p.alpha * leak)
        u_new = u_int + p.k_p * e
        apical = torch.split(u_new @ dyn.Q.T, dyn.sizes[:-1], dim=1)
        u = u_new
        r_prev = dyn.x
        for i in range(net.num_layers):
            basal = dyn.basal_1 if i == 0 else net.basal(i, r_prev)
            vs[i] = vs[i] + dt / p.tau_v * (apical[i] + basal - vs[i])
            r_prev = net.phi(i, vs[i])
        dyn.nfe += 1
    if times is None:
        return y, None, None
    t_grid = torch.tensor(steps, dtype=y0.dtype, device=y0.device) * dt
    return y, torch.stack(recorded), t_grid


def build_trajectory(dyn: WakeDynamics, t: torch.Tensor, states: torch.Tensor) -> Trajectory:
    """Derive every compartment and controller signal from the states on a time grid."""
    net, L = dyn.net, dyn.net.num_layers
    T, B = states.shape[0], states.shape[1]
    vs, u_int = dyn.split(states)
    vs, u_int = [v.reshape(T * B, -1) for v in vs], u_int.reshape(T * B, -1)
    x_rep = dyn.x.repeat(T, 1)
    rs = [net.phi(i, v) for i, v in enumerate(vs)]
    basal = [net.basal(i, x_rep if i == 0 else rs[i - 1]) for i in range(L)]
    e = dyn.r_star.repeat(T, 1) - rs[-1]
    u = u_int + dyn.p.k_p * e
    apical = [u @ net.Q[i].T for i in range(L)]

    def shape(a):
        return a.reshape(T, B, -1)

    return Trajectory(t=t, soma=[shape(v) for v in vs], basal=[shape(a) for a in basal],
                      apical=[shape(a) for a in apical], rate=[shape(r) for r in rs],
                      u=shape(u), u_int=shape(u_int), error=shape(e))


def _check_finite(y: torch.Tensor, method: str) -> None:
    worst = float(y.abs().max())
    if not math.isfinite(worst) or worst > STATE_LIMIT:
        fixed = "" if method in ADAPTIVE_SOLVERS else \
            f"use a smaller step_size (the {method} step must resolve τ_v), or "
        raise DivergenceError(
            f"the network-plus-controller dynamics diverged (largest state magnitude {worst:.3g}); "
            f"{fixed}lower k_p or target_stepsize, raise alpha, or use feedback weights that meet "
            "Condition 3.")


SOLVERS = {"rosenbrock": _rosenbrock, "dopri5": _dormand_prince, "authors-euler": _authors_euler,
           **{name: _torchdiffeq for name in ADAPTIVE_SOLVERS + FIXED_SOLVERS
              if name not in ("rosenbrock", "dopri5")}}


HARDWARE_SOLVERS = ("dopri5", "rosenbrock")


def simulate_hardware_wake(model, x: torch.Tensor, r_star: torch.Tensor | None, t_end: float,
                           times: torch.Tensor, rtol: float = 1e-9, atol: float = 1e-9,
                           max_steps: int = 10_000_000, noise=None,
                           method: str = "dopri5", from_rest: bool = False) -> Trajectory:
    """The wake phase (``r_star`` given) or the feed-forward phase (``r_star=None``) of the
    realised circuit (:class:`dfc_analog.model.hardware.HardwareModel`), from its feed-forward
    equilibrium (``from_rest``: an inference, from the equilibrium on a zero input, the input
    stepping to ``x`` at t = 0; controller off), at rtol / atol in model units (the model's
    dtype), read at ``times``. Batched
    over the samples of ``x`` (B, n_0). ``method``: ``'dopri5'`` (Dormand–Prince) or
    ``'rosenbrock'`` (ROS34PW2 with the exact Jacobian of the realised circuit,
    :class:`~dfc_analog.model.hardware.HardwareJacobian`: its op-amp poles make the
    dynamics stiff for dopri5, whose step they bound whatever the tolerance). ``noise``: the
    read-noise path of the batch (:class:`~dfc_analog.model.hardware.ReadNoisePath`), its grid
    times as dopri5's breakpoints."""
    if method not in HARDWARE_SOLVERS:
        raise ConfigError(f"the hardware emulation has no solver '{method}': choose one of "
                          f"{', '.join(HARDWARE_SOLVERS)}.")
    if method == "rosenbrock" and noise is not None:
        raise ConfigError("the rosenbrock solver cannot integrate the read-noise process (a "
                          "forcing in time with a kink at every read, which its steps do not "
                          "stop at): use dopri5.")
    if from_rest and r_star is not None:
        raise ConfigError("an inference (from rest) runs with the controller off: no target.")
    with torch.no_grad():
        dyn = model.dynamics(x, r_star, noise)
        y0 = model.feedforward(torch.zeros_like(x) if from_rest else x)["state"]
        t_grid = _output_times(times, t_end, y0)
        if method == "rosenbrock":
            states = rosenbrock_w(dyn, dyn.stiff_part, y0, t_grid.tolist(), rtol, atol,
                                  max_steps)
        else:
            states = dormand_prince(dyn, y0, t_grid.tolist(), rtol, atol, max_steps,
                                    breakpoints=() if noise is None else
                                    noise.breakpoints(t_end))
        _check_finite(states[-1], method)
        traj = dyn.trajectory(t_grid, states)
        return traj if times is None else traj.at(times.to(t_grid))
