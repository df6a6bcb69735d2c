"""The sleep phase: feedback-weight learning from noise (paper §5, eqs. 12 and 13).

The output target is the feed-forward output itself, r_L* = r_L^-, and every layer receives noise,
which the controller counteracts; the control u then carries the noise as propagated through the
network, i.e. information on the Jacobian J. The noise enters the apical compartment through its own
low-pass filter τ_A (as in the authors' experiments):

    τ_A dv_A,i = (-v_A,i + Q_i u) dt + σ_i dW_i
    τ_v dv_i   = (-v_i + v_B,i + v_A,i) dt                       (eq. 12 with the noise in v_A)
    u = u_int + k_p e,  τ_u du_int/dt = e - α u_int  (or e - α u, ``leak='total'``)

integrated with Euler–Maruyama (instantaneous transmission; the apical compartment sees the control
of the previous step). Eq. (13), τ_Q dQ_i/dt = -v_A,i uᵀ - β Q_i, is accumulated along the way; its
time average, scaled by 1/σ̂² with σ̂ = max(σ, 0.01) as in the authors' code, is returned as a
gradient-like update, and the decay β is left to the optimizer's weight decay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import DivergenceError
from .network import DFCNetwork
from .solve import STATE_LIMIT


@dataclass(frozen=True)
class SleepParams:
    """The constants of a sleep phase (the paper's Fig. 3 values by default)."""

    tau_v: float = 0.01
    tau_u: float = 1.0
    tau_a: float = 0.3
    alpha: float = 0.25
    k_p: float = 0.1
    sigma: float = 0.01
    sigma_output: float = 0.01
    dt: float = 0.002
    t_end: float = 0.1
    leak: str = "integral"

    @classmethod
    def from_config(cls, cfg) -> "SleepParams":
        return cls(cfg.tau_v_fb, cfg.tau_u, cfg.tau_a_fb, cfg.alpha_fb, cfg.k_p_fb, cfg.sigma_fb,
                   cfg.sigma_fb_output, cfg.dt_fb, cfg.t_end_fb, cfg.leak)


@torch.no_grad()
def feedback_update(net: DFCNetwork, x: torch.Tensor, p: SleepParams,
                    generator: torch.Generator) -> list:
    """One sleep phase over a minibatch: gradient-like updates g_Q_i = ⟨v_A,i uᵀ⟩ / σ̂² per layer.

    A step in the direction -g_Q_i is the anti-Hebbian rule of eq. (13) without its decay term.
    """
    L = net.num_layers
    v_ff, r_ff = net.feedforward(x)
    r_star = r_ff[-1]
    B = x.shape[0]
    vs = [v.clone() for v in v_ff]
    rs = [r.clone() for r in r_ff]
    apical = [torch.zeros_like(v) for v in vs]
    u_int = torch.zeros_like(r_star)
    u = torch.zeros_like(r_star)
    acc = [torch.zeros_like(q) for q in net.Q]
    sigmas = [p.sigma] * (L - 1) + [p.sigma_output]
    noise_scale = [s * math.sqrt(p.dt) / p.tau_a for s in sigmas]
    steps = max(1, int(round(p.t_end / p.dt)))
    noise = [torch.randn((steps,) + tuple(v.shape), generator=generator, dtype=v.dtype,
                         device=v.device).mul_(scale) for v, scale in zip(vs, noise_scale)]
    basal_1 = v_ff[0]            # W_1 x + b_1: the input is constant during the phase
    for k in range(steps):
        e = r_star - rs[-1]
        leak = u_int if p.leak == "integral" else u
        u_int = u_int + p.dt / p.tau_u * (e - p.alpha * leak)
        u_next = u_int + p.k_p * e
        for i in range(L):
            acc[i].addmm_(apical[i].T, u_next)                      # v_A[k] u[k+1]ᵀ
            apical[i] = apical[i] + p.dt / p.tau_a * (u @ net.Q[i].T - apical[i]) + noise[i][k]
            basal = basal_1 if i == 0 else net.basal(i, rs[i - 1])
            vs[i] = vs[i] + p.dt / p.tau_v * (basal + apical[i] - vs[i])
            rs[i] = net.phi(i, vs[i])
        u = u_next
    worst = max(float(v.abs().max()) for v in vs)
    if not math.isfinite(worst) or worst > STATE_LIMIT:
        raise DivergenceError(f"the sleep-phase dynamics diverged (largest voltage {worst:.3g}); "
                              "use a smaller dt_fb, or raise alpha_fb.")
    scale = 1.0 / (max(p.sigma, 0.01) ** 2 * steps * B)
    return [a * scale for a in acc]
