"""Vector field of the wake phase: the network of eq. (1) driven by the PI controller of eq. (4).

Per layer i the three compartments of a neuron are

    basal    v_B,i = W_i r_{i-1} + b_i           (feed-forward input, algebraic)
    apical   v_A,i = Q_i u                       (feedback input, algebraic in the wake phase)
    soma     τ_v dv_i/dt = -v_i + v_B,i + v_A,i  (eq. 1),   r_i = φ_i(v_i)

and the controller, with e = r* - r_L the control error, is

    u = u_int + k_p e,   τ_u du_int/dt = e - α u_int       (eq. 4, ``leak='integral'``)
                         τ_u du_int/dt = e - α u           (authors' code, ``leak='total'``).

The ODE state is one (B, Σ n_i + n_L) tensor y = [v_1 - v_1^-, ..., v_L - v_L^-, u_int] / s: the
departure from the feed-forward equilibrium of eq. (2), in units of the output nudge
s = max |δ_L| of eq. (3). Learning reads exactly this departure (eq. 5 compares v with v_B), and
it is small (∝ λ); measured in these units, the solver's rtol and atol bound the error of the
feedback response itself rather than of v^-, which is known exactly. The eq. (5) plasticity is
integrated alongside by :class:`PlasticityIntegral`, a quadrature over the solver's accepted
steps, so that memory does not grow with simulated time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .network import DFCNetwork


@dataclass(frozen=True)
class ControllerParams:
    """The constants of eqs. (1) and (4), and the form of the plasticity signal."""

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
    """``f(t, y)`` for torchdiffeq: eqs. (1) and (4) for a minibatch, in the scaled departure
    y = [v - v^-, u_int] / s from the feed-forward state ``v_ff`` (see the module docstring)."""

    def __init__(self, net: DFCNetwork, x: torch.Tensor, r_star: torch.Tensor,
                 params: ControllerParams, v_ff):
        super().__init__()
        self.net = net
        self.x = x
        self.r_star = r_star
        self.p = params
        self.sizes = net.layer_sizes[1:] + [net.layer_sizes[-1]]
        self.basal_1 = net.basal(0, x)  # constant: the input does not change during the phase
        self.Q = net.feedback_matrix()  # all apical inputs in one product u Qᵀ
        self.origin = torch.cat(list(v_ff) + [torch.zeros_like(r_star)], dim=1)
        r_L = net.phi(net.num_layers - 1, v_ff[-1])
        nudge = float((r_star - r_L).abs().max())
        self.scale = nudge if nudge > 0 else 1.0
        self.offsets = [0]
        for size in self.sizes[:-1]:          # column where each layer's block starts
            self.offsets.append(self.offsets[-1] + size)
        # b_i - v_i^- for i ≥ 2, so that W_i r_{i-1} + this is v_B,i - v_i^- in one addmm
        self.basal_offset = [None] + [net.b[i] - v_ff[i] for i in range(1, net.num_layers)]
        self.nfe = 0

    def initial_state(self) -> torch.Tensor:
        """The feed-forward equilibrium of eq. (2), controller at rest: y = 0."""
        return torch.zeros_like(self.origin)

    def absolute(self, y: torch.Tensor) -> torch.Tensor:
        """[v_1, ..., v_L, u_int] of a scaled state (any leading axes)."""
        return self.origin + self.scale * y

    def pack(self, vs, u_int) -> torch.Tensor:
        """The scaled state of absolute voltages and controller integral."""
        return (torch.cat(list(vs) + [u_int], dim=-1) - self.origin) / self.scale

    def split(self, y: torch.Tensor):
        """(v_1, ..., v_L), u_int of a scaled state (the last axis is the state axis)."""
        *vs, u_int = torch.split(self.absolute(y), self.sizes, dim=-1)
        return vs, u_int

    def forward(self, t, y):
        """dy/dt. Written for the hot path: one output buffer, no full-state copies, and
        v_B,i - v_i^- = W_i r_{i-1} + (b_i - v_i^-) in one fused product (zero for i = 1)."""
        self.nfe += 1
        net, p, s, L = self.net, self.p, self.scale, self.net.num_layers
        n = self.offsets                      # layer i: columns n[i-1]:n[i]; u_int: n[L]:
        y_v, y_u = y[:, :n[L]], y[:, n[L]:]

        def v(i):                             # absolute voltage of layer i (1-based)
            return torch.add(self.origin[:, n[i - 1]:n[i]], y[:, n[i - 1]:n[i]], alpha=s)

        e = self.r_star - net.phi(L - 1, v(L))
        u = torch.add(p.k_p * e, y_u, alpha=s)
        out = torch.empty_like(y)
        dv = out[:, :n[L]]
        dv.copy_(u @ self.Q.T).sub_(y_v, alpha=s)          # apical - (v - v^-)
        for i in range(1, L):
            dv[:, n[i]:n[i + 1]].add_(
                torch.addmm(self.basal_offset[i], net.phi(i - 1, v(i)), net.W[i].T))
        dv.mul_(1.0 / (p.tau_v * s))
        leak = y_u * s if p.leak == "integral" else u
        out[:, n[L]:] = (e - p.alpha * leak) / (p.tau_u * s)
        return out

    def attach(self, integral: "PlasticityIntegral", fixed_grid: bool) -> None:
        """Feed every step the solver takes into ``integral``.

        torchdiffeq calls ``callback_accept_step(t0, y0, dt)`` after each accepted step of an
        adaptive method and ``callback_step`` before each step of a fixed-grid method.
        """
        def node(t0, y0, dt):
            integral.add_node(float(t0), y0, float(dt))
        setattr(self, "callback_step" if fixed_grid else "callback_accept_step", node)


class PlasticityIntegral:
    """Time integral of the eq. (5) signal, by the trapezoidal rule over the solver's steps.

    With Δ_i = φ(v_i) - φ(v_B,i) (eq. 5; ``v_i - v_B,i`` for eq. 9) it holds

        d_i = ∫ Δ_i dt               per sample, (B, n_i)
        M_i = ∫ Δ_iᵀ r_{i-1} dt      summed over the batch, (n_i, n_{i-1}), for i ≥ 2;

    layer 1 needs no M_1 because r_0 = x is constant: ∫ Δ_1ᵀ x dt = d_1ᵀ x. Each step node
    t_k enters with the weight (t_{k+1} - t_{k-1})/2, known as soon as the step from t_k is
    accepted, so nothing but the sums is kept: memory is independent of simulated time.
    """

    def __init__(self, dyn: WakeDynamics, t_end: float):
        self.dyn = dyn
        self.t_end = t_end
        net = dyn.net
        self.d = [torch.zeros(dyn.x.shape[0], n, dtype=net.dtype, device=net.device)
                  for n in net.layer_sizes[1:]]
        self.M = [torch.zeros(net.layer_sizes[i + 1], net.layer_sizes[i], dtype=net.dtype,
                              device=net.device) for i in range(1, net.num_layers)]
        self.t_prev = None

    def signals(self, y):
        """Δ_i and the presynaptic rates r_{i-1} at state ``y``."""
        dyn, net = self.dyn, self.dyn.net
        vs, _ = dyn.split(y)
        deltas, pre = [], []
        r_prev = dyn.x
        for i, v in enumerate(vs):
            basal = dyn.basal_1 if i == 0 else net.basal(i, r_prev)
            pre.append(r_prev)
            r_prev = net.phi(i, v)
            if dyn.p.plasticity == "voltage":
                deltas.append(v - basal)
            else:
                deltas.append(r_prev - net.phi(i, basal))
        return deltas, pre

    def _add(self, y, weight: float):
        deltas, pre = self.signals(y)
        for i, delta in enumerate(deltas):
            self.d[i].add_(delta, alpha=weight)
            if i > 0:
                self.M[i - 1].addmm_(delta.T, pre[i], alpha=weight)

    def add_node(self, t0: float, y0, dt: float):
        """Node t0 of an accepted step [t0, t0 + dt] (the last step may end beyond t_end)."""
        left = 0.0 if self.t_prev is None else t0 - self.t_prev
        self._add(y0, 0.5 * (left + min(dt, self.t_end - t0)))
        self.t_prev = t0

    def add_rectangle(self, y, dt: float):
        """Left-rectangle node: the authors' Euler sum Σ_k Δ(t_k) dt."""
        self._add(y, dt)

    def finish(self, y_end):
        """Close the rule with the last node, the final state at t_end."""
        left = 0.0 if self.t_prev is None else self.t_end - self.t_prev
        self._add(y_end, 0.5 * left)
