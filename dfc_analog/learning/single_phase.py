"""Single-phase DFC: forward and feedback plasticity on at once, no separate sleep phase
(paper §7, "both phases can be merged into one", and its App. C.3).

One phase per minibatch replaces the wake phase and the sleep phases. The network runs the
controlled dynamics of eqs. (1) and (4) towards the target r* of eq. (3), with the noise of
eq. (12) entering through the apical compartments (low-pass filtered by τ_A, as in the sleep
phase), and both plasticity rules run along it:

    τ_A dn_i   = -n_i dt + σ_i dW_i                   apical noise, v_A,i = Q_i u + n_i
    τ_v dv_i   = (-v_i + W_i φ(v_{i-1}) + b_i + v_A,i) dt                          (eq. 12)
    e = r* - r_L,   u = u_int + k_p e,   τ_u du_int/dt = e - α u_int  (or e - α u)  (eq. 4)
    τ_hp du_lp = (u - u_lp) dt,   u_hp = u - u_lp        first-order high-pass of the control
    forward    g_W_i = -(2/B) (1/T) ∫_0^T Σ_b (φ(v_i) - φ(v_B,i)) r_{i-1}ᵀ dt        (eq. 5)
    feedback   g_Q_i = 1/(σ̂² B T) ∫_0^T Σ_b v_A,i u_hpᵀ dt     (eq. 13 on the high-passed u)

Why the high-pass. With a task target the control is u = u_task + u_noise: u_task settles to
the control that solves the output error (Lemma 1), u_noise carries the noise as the network
propagates it, which is the information on J that eq. (13) needs. Eq. (13) on the whole u
would add -Q u_task u_taskᵀ to the feedback update: no information on J, only a decay of Q
along the direction of the present control. The high-pass keeps the fluctuations above
1/(2π τ_hp) and removes the settled control, so the feedback rule sees what the sleep phase
sees (there r* = r_L^-, and u is u_noise alone). τ_hp should lie above τ_A (the noise's
correlation time) and below T.

Discretisation: the authors' forward Euler (:func:`dfc_analog.solvers.wake` 'authors-euler':
controller first, then the layers in order, each seeing the updated rate below and the new
control), with Euler–Maruyama for the noise; both integrals are left Riemann sums over the
steps. With σ = 0 the forward update is the 'authors-euler' DFC update exactly. As in the
sleep phase, g_Q is scaled by 1/σ̂², σ̂ = max(σ, 0.01), and the decay β of eq. (13) is left to
the feedback optimizer's weight decay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfc_analog.errors import ConfigError, DivergenceError
from dfc_analog.learning.forward import ForwardUpdate
from dfc_analog.learning.sleep import draw_noise
from dfc_analog.learning.targets import output_target, task_loss
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import STATE_LIMIT


@dataclass(frozen=True)
class SinglePhaseParams:
    """The constants of a single phase: the wake phase's dynamics (τ_v, τ_u, α, k_p, leak, T,
    step Δt), the target of eq. (3), the noise of eq. (12) (σ, σ_L, τ_A) and the high-pass
    τ_hp of the feedback rule."""

    tau_v: float = 0.2
    tau_u: float = 1.0
    alpha: float = 0.0015
    k_p: float = 1.5
    leak: str = "integral"
    t_end: float = 5.0
    dt: float = 0.005
    plasticity: str = "rate"
    loss: str = "mse"
    reduction: str = "mean"
    target_stepsize: float = 0.05
    sigma: float = 0.01
    sigma_output: float = 0.01
    tau_a: float = 0.3
    tau_hp: float = 1.0
    fb_delay: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "SinglePhaseParams":
        return cls(tau_v=cfg.tau_v, tau_u=cfg.tau_u, alpha=cfg.alpha, k_p=cfg.k_p, leak=cfg.leak,
                   t_end=cfg.t_end, dt=cfg.step_size, plasticity=cfg.plasticity, loss=cfg.loss,
                   reduction=cfg.loss_reduction, target_stepsize=cfg.target_stepsize,
                   sigma=cfg.sigma_fb, sigma_output=cfg.sigma_fb_output, tau_a=cfg.tau_a_fb,
                   tau_hp=cfg.tau_hp, fb_delay=cfg.fb_delay)

    @property
    def steps(self) -> int:
        """The Euler–Maruyama steps of the phase: its length is steps · dt."""
        return max(1, int(round(self.t_end / self.dt)))

    @property
    def fb_start(self) -> int:
        """The step from which eq. (13) integrates (``fb_delay`` / Δt, at least one step
        before the end)."""
        return min(self.steps - 1, int(round(self.fb_delay / self.dt)))

    @property
    def sigma_hat(self) -> float:
        """σ̂ = max(σ, 0.01), by whose square g_Q is divided (as in the sleep phase)."""
        return max(self.sigma, 0.01)


def draw_phase_noise(p: SinglePhaseParams, batch: int, columns: int,
                     generator: torch.Generator, device=None) -> torch.Tensor:
    """The standard-normal draws ξ (p.steps, batch, columns) that :func:`single_phase_update`
    takes from ``generator`` for a minibatch of ``batch`` (one (batch, columns) draw per step,
    :func:`~dfc_analog.learning.sleep.draw_noise`): ``noise=`` this path is the generator's."""
    return torch.stack([draw_noise((batch, columns), generator, device)
                        for _ in range(p.steps)])


@torch.no_grad()
def single_phase_update(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor,
                        p: SinglePhaseParams, generator: torch.Generator | None,
                        noise: torch.Tensor | None = None):
    """One single phase over a minibatch (module docstring): returns (the forward update as a
    :class:`~dfc_analog.learning.forward.ForwardUpdate`, the feedback updates g_Q_i).

    The standard-normal draws ξ are drawn from ``generator`` step by step, each a (B, Σ n_i)
    float32 draw (:func:`~dfc_analog.learning.sleep.draw_noise`, the sleep phase's convention),
    so memory stays flat in the phase length; or they are ``noise`` (p.steps, B, Σ n_i), a
    given path."""
    if p.dt > p.tau_v / 2:
        raise ConfigError(f"the single phase's Euler step {p.dt:g} must be at most τ_v / 2 = "
                          f"{p.tau_v / 2:g}; lower step_size.")
    L = net.num_layers
    sizes = net.layer_sizes[1:]
    v_ff, r_ff = net.feedforward(x)
    batch_loss = float(task_loss(r_ff[-1], y, p.loss))
    r_star, _ = output_target(r_ff[-1], y, p.loss, p.reduction, p.target_stepsize)
    Q = net.feedback_matrix()                                     # (Σ n_i, n_L)
    QT = Q.T.contiguous()
    dt, steps, B = p.dt, p.steps, x.shape[0]
    if noise is not None:
        if tuple(noise.shape) != (steps, B, sum(sizes)):
            raise ConfigError(f"the single-phase noise must have shape "
                              f"{(steps, B, sum(sizes))}, got {tuple(noise.shape)}.")
        noise = noise.to(x.device)
    sigma = torch.cat([torch.full((n,), s, dtype=x.dtype, device=x.device) for n, s in
                       zip(sizes, [p.sigma] * (L - 1) + [p.sigma_output])])
    kick = sigma * (math.sqrt(dt) / p.tau_a)
    decay_a, a_v, a_hp = 1.0 - dt / p.tau_a, dt / p.tau_v, dt / p.tau_hp
    basal_1 = net.basal(0, x)
    vs = [v.clone() for v in v_ff]
    rs = [r.clone() for r in r_ff]
    basals = [basal_1] + [net.basal(i, r_ff[i - 1]) for i in range(1, L)]
    noise_state = torch.zeros(B, sum(sizes), dtype=x.dtype, device=x.device)
    u_int = torch.zeros_like(r_star)
    u = torch.zeros_like(r_star)
    u_lp = torch.zeros_like(r_star)
    gW = [torch.zeros_like(w) for w in net.W]
    gb = [torch.zeros_like(b) for b in net.b]
    g_Q = torch.zeros_like(Q)
    apical = torch.zeros_like(noise_state)
    fb_start = p.fb_start
    for step in range(steps):
        # eq. (5) and eq. (13) at the state before the step (left Riemann sums)
        for i in range(L):
            delta = vs[i] - basals[i] if p.plasticity == "voltage" else \
                rs[i] - net.phi(i, basals[i])
            gW[i].addmm_(delta.T, x if i == 0 else rs[i - 1])
            gb[i].add_(delta.sum(0))
        if step >= fb_start:
            g_Q.addmm_(apical.T, u - u_lp)
        # controller (eq. 4) and its high-pass, then the layers in order (eq. 12), each seeing
        # the updated rate below: its basal input is then also the next step's v_B
        e = r_star - rs[-1]
        leak = u_int if p.leak == "integral" else u
        u_int = u_int + dt / p.tau_u * (e - p.alpha * leak)
        u_lp = u_lp + a_hp * (u - u_lp)
        u = u_int + p.k_p * e
        xi = noise[step] if noise is not None else \
            draw_noise(noise_state.shape, generator, x.device)
        noise_state.mul_(decay_a).addcmul_(xi.to(x.dtype), kick)
        apical = torch.addmm(noise_state, u, QT)
        parts = torch.split(apical, sizes, dim=1)
        for i in range(L):
            if i > 0:
                basals[i] = net.basal(i, rs[i - 1])
            vs[i] = vs[i] + a_v * (parts[i] + basals[i] - vs[i])
            rs[i] = net.phi(i, vs[i])
    worst = max(float((v - v0).abs().max()) for v, v0 in zip(vs, v_ff))
    if not math.isfinite(worst) or worst > STATE_LIMIT:
        raise DivergenceError(f"the single-phase dynamics diverged (largest voltage departure "
                              f"{worst:.3g}); lower step_size, k_p or target_stepsize, or raise "
                              f"alpha.")
    scale = -2.0 / (B * steps)                 # (1/T) ∫ dt = (1/steps) Σ over the steps
    fb_scale = 1.0 / (p.sigma_hat ** 2 * (steps - fb_start) * B)
    forward = ForwardUpdate([g.mul_(scale) for g in gW], [g.mul_(scale) for g in gb], batch_loss)
    return forward, [g.mul(fb_scale) for g in g_Q.split(sizes, dim=0)]
