"""Vector field of the wake phase: the network of eq. (1) driven by the PI controller of eq. (4).

Per layer i the three compartments of a neuron are

    basal    v_B,i = W_i r_{i-1} + b_i           (feed-forward input, algebraic)
    apical   v_A,i = Q_i u                       (feedback input, algebraic in the wake phase)
    soma     τ_v dv_i/dt = -v_i + v_B,i + v_A,i  (eq. 1),   r_i = φ_i(v_i)

and the controller, with e = r* - r_L the control error, is

    u = u_int + k_p e,   τ_u du_int/dt = e - α u_int       (eq. 4, ``leak='integral'``)
                         τ_u du_int/dt = e - α u           (authors' code, ``leak='total'``).

The ODE state is ``(v_1, ..., v_L, u_int)``. When the eq. (5) plasticity is accumulated, the state
also carries its time integral, so that memory does not grow with simulated time:

    d_i = ∫ Δ_i dt         per sample, (B, n_i), with Δ_i = φ(v_i) - φ(v_B,i)  (or v_i - v_B,i)
    M_i = ∫ Δ_iᵀ r_{i-1} dt  summed over the batch, (n_i, n_{i-1}), for i ≥ 2.

Layer 1 needs no M_1: its input r_0 = x is constant, so ∫ Δ_1ᵀ x dt = d_1ᵀ x.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .network import DFCNetwork


@dataclass(frozen=True)
class ControllerParams:
    """The constants of eqs. (1) and (4)."""

    tau_v: float = 0.2
    tau_u: float = 1.0
    alpha: float = 0.0015
    k_p: float = 1.5
    leak: str = "integral"      # 'integral' (eq. 4) or 'total' (authors' code)
    plasticity: str = "rate"    # 'rate' (eq. 5) or 'voltage' (eq. 9)

    @classmethod
    def from_config(cls, cfg) -> "ControllerParams":
        return cls(cfg.tau_v, cfg.tau_u, cfg.alpha, cfg.k_p, cfg.leak, cfg.plasticity)

    @property
    def alpha_eff(self) -> float:
        """α̃ of Lemma 1: the steady state obeys e = α̃ u."""
        if self.leak == "integral":
            return self.alpha / (1.0 + self.alpha * self.k_p)
        return self.alpha


class WakeDynamics(nn.Module):
    """``f(t, state)`` for torchdiffeq: eqs. (1) and (4), optionally with the eq. (5) integrals."""

    def __init__(self, net: DFCNetwork, x: torch.Tensor, r_star: torch.Tensor,
                 params: ControllerParams, accumulate: bool):
        super().__init__()
        self.net = net
        self.x = x
        self.r_star = r_star
        self.p = params
        self.accumulate = accumulate
        self.basal_1 = net.basal(0, x)  # constant: the input does not change during the phase
        self.nfe = 0

    def initial_state(self, v_ff):
        """The feed-forward equilibrium of eq. (2), controller at rest, integrals at zero."""
        B = self.x.shape[0]
        state = [v.clone() for v in v_ff]
        state.append(torch.zeros_like(self.r_star))
        if self.accumulate:
            net = self.net
            n = net.layer_sizes
            state += [torch.zeros(B, n[i + 1], dtype=net.dtype, device=net.device)
                      for i in range(net.num_layers)]
            state += [torch.zeros(n[i + 1], n[i], dtype=net.dtype, device=net.device)
                      for i in range(1, net.num_layers)]
        return tuple(state)

    def signals(self, state):
        """Algebraic signals of a state: rates, basal inputs, error and control u."""
        net, L = self.net, self.net.num_layers
        vs = state[:L]
        rs = [net.phi(i, v) for i, v in enumerate(vs)]
        basal = [self.basal_1] + [net.basal(i, rs[i - 1]) for i in range(1, L)]
        e = self.r_star - rs[-1]
        u = state[L] + self.p.k_p * e
        return vs, rs, basal, e, u

    def plasticity_signal(self, i, v, v_basal):
        """Δ_i of eq. (5) (φ(v) - φ(v_B)) or of eq. (9) (v - v_B)."""
        if self.p.plasticity == "voltage":
            return v - v_basal
        return self.net.phi(i, v) - self.net.phi(i, v_basal)

    def forward(self, t, state):
        self.nfe += 1
        net, p, L = self.net, self.p, self.net.num_layers
        vs, rs, basal, e, u = self.signals(state)
        dv = [(basal[i] + u @ net.Q[i].T - vs[i]) / p.tau_v for i in range(L)]
        leak = state[L] if p.leak == "integral" else u
        du_int = (e - p.alpha * leak) / p.tau_u
        out = dv + [du_int]
        if self.accumulate:
            deltas = [self.plasticity_signal(i, vs[i], basal[i]) for i in range(L)]
            out += deltas
            out += [deltas[i].T @ rs[i - 1] for i in range(1, L)]
        return tuple(out)
