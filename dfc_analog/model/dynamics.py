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

from dfc_analog.model.network import (DFCNetwork, fold_matmul, phi_departure, small_tanh_,
                                      tanh_departure)

# Widest output layer for which the Rosenbrock solve keeps the feed-forward coupling
# (WakeDynamics.stiff_part): it stores L tensors of B x Σ n_i x n_L and inverts B n_L x n_L.
COUPLED_MAX_OUTPUTS = 64


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
        return cls(tau_v=cfg.tau_v, tau_u=cfg.tau_u, alpha=cfg.alpha, k_p=cfg.k_p, leak=cfg.leak,
                   plasticity=cfg.plasticity)

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
                 params: ControllerParams, v_ff, nudge: torch.Tensor | None = None):
        """``nudge``: δ = r* - r_L^- of eq. (3) where the caller has it (:func:`output_target`);
        formed here as r* - r_L^- it loses, in float32, the digits of a small δ to a large
        output (0.2 % of δ on a trained MNIST network whose outputs reach 13)."""
        super().__init__()
        self.net = net
        self.x = x
        self.r_star = r_star
        self.p = params
        self.sizes = net.layer_sizes[1:] + [net.layer_sizes[-1]]
        self.basal_1 = net.basal(0, x)  # constant: the input does not change during the phase
        self.Q = net.feedback_matrix()  # all apical inputs in one product u Qᵀ
        self.QT = self.Q.T.contiguous()
        self.origin = torch.cat(list(v_ff) + [torch.zeros_like(r_star)], dim=1)
        r_L = net.phi(net.num_layers - 1, v_ff[-1])
        delta = r_star - r_L if nudge is None else nudge
        largest = float(delta.abs().max())
        self.scale = largest if largest > 0 else 1.0
        self.offsets = [0]
        for size in self.sizes[:-1]:          # column where each layer's block starts
            self.offsets.append(self.offsets[-1] + size)
        L, N = net.num_layers, self.offsets[-1]
        # Everything below is in departures from the feed-forward state, in units of s, so that
        # float32 keeps the digits of the (small) feedback response: the rates' departure
        # (φ(v^- + s y) - φ(v^-)) / s is formed without cancellation (network.phi_departure),
        # the basal departure of layer i ≥ 2 is W_i times the rate departure below (b_i and
        # v_i^- cancel exactly; zero for layer 1, whose input is constant), and e / s =
        # δ / s - Δr_L / s with the nudge δ = r* - r_L^- of eq. (3).
        self.r_ff = torch.cat([net.phi(i, v) for i, v in enumerate(v_ff)], dim=1)
        self.nudge = delta / self.scale
        self.QT_tau = self.QT / params.tau_v
        self.WT_tau = [None] + [(net.W[i].T / params.tau_v).contiguous() for i in range(1, L)]
        # One tanh over all layers when the hidden layers are tanh (the linear output layer's
        # departure is then written over); else one φ per layer.
        self.linear_output = net.activations[-1] == "linear"
        self.all_tanh = set(net.activations[:-1]) == {"tanh"} and \
            net.activations[-1] in ("tanh", "linear")
        if self.all_tanh:
            self.tanh_gain = (1.0 - self.r_ff * self.r_ff) / self.scale
        self.nfe = 0
        self.paths = None  # the stiff solve's L^k Q products (stiff_part), formed on first use
        self.memo = None   # (y, rate departure, control u / s, dy/dt) of the last evaluation

    def rate_departure(self, z: torch.Tensor) -> torch.Tensor:
        """(φ(v^- + s z) - φ(v^-)) / s for a scaled voltage departure z of all layers (B, Σ n_i)."""
        net, s, n, L = self.net, self.scale, self.offsets, self.net.num_layers
        if self.all_tanh:
            dr = tanh_departure(small_tanh_(torch.mul(z, s)), self.r_ff, self.tanh_gain)
            if self.linear_output:
                dr[:, n[L - 1]:] = z[:, n[L - 1]:]
            return dr
        v_ff = self.origin
        return torch.cat([phi_departure(net.activations[i], v_ff[:, n[i]:n[i + 1]],
                                        self.r_ff[:, n[i]:n[i + 1]], s * z[:, n[i]:n[i + 1]])
                          for i in range(L)], dim=1).div_(s)

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

    def forward(self, t, y, out: torch.Tensor | None = None):
        """dy/dt, written into ``out`` when given. In the scaled departures (module docstring),
        with Δr the rate departure / s, e / s = δ / s - Δr_L and u / s = y_u + k_p e / s:

            τ_v dy_i/dt = Q_i u / s + W_i Δr_{i-1} - y_i          (eq. 1; no W_1 term)
            τ_u dy_u/dt = e / s - α (y_u or u / s)                (eq. 4)
        """
        self.__dict__["nfe"] += 1     # (plain attributes: nn.Module's __setattr__ is slow)
        p, L, n = self.p, self.net.num_layers, self.offsets
        N = n[L]                              # layer i: columns n[i-1]:n[i]; u_int: N:
        y_v, y_u = y[:, :N], y[:, N:]
        dr = self.rate_departure(y_v)
        e = self.nudge - dr[:, n[L - 1]:N]
        u = torch.add(y_u, e, alpha=p.k_p)
        out = torch.empty_like(y) if out is None else out
        dv = torch.addmm(y_v, u, self.QT_tau, beta=-1.0 / p.tau_v, out=out[:, :N])
        for i in range(1, L):
            dv[:, n[i]:n[i + 1]].addmm_(dr[:, n[i - 1]:n[i]], self.WT_tau[i])
        leak = y_u if p.leak == "integral" else u
        torch.add(e, leak, alpha=-p.alpha, out=out[:, N:]).mul_(1.0 / p.tau_u)
        self.__dict__["memo"] = (y, dr, u, out)
        return out

    def stiff_part(self, y: torch.Tensor, c: float):
        """``solve`` with solve(b, scale) = (I - cA)⁻¹ (scale · b), A the stiff part of the
        Jacobian of :meth:`forward`, for the Rosenbrock-W solver (any A keeps its order; A only
        has to hold the stiff modes for the step to follow accuracy).

        A is the Jacobian of eqs. (1) and (4) with the slopes φ_i' frozen at the feed-forward
        state (the departures are a small multiple of the nudge). With D_i = diag φ_i'(v_i^-),
        the feed-forward coupling (Lw)_i = W_i D_{i-1} w_{i-1} and g = 1 (eq. 4) or 1 - α k_p
        (leak on u):

            τ_v (A w)_v = -w_v + L w_v + Q (w_u - k_p D_L w_L),   τ_u (A w)_u = -g D_L w_L - α w_u.

        The coupling through the layers matters: with trained weights the loop u → Q_i → W → v_L
        is what makes the wake phase stiff. (I - cA) is lower block-triangular plus rank n_L
        (everything else passes through Q), so it is solved by forward substitution through the
        layers and one n_L x n_L system per sample, with (I a_v - βL)⁻¹ Q = Σ_k β^k / a_v^{k+1}
        L^k Q summed from products L^k Q formed once per phase (:meth:`_loop_paths`). Outputs
        wider than ``COUPLED_MAX_OUTPUTS`` (the autoencoder: n_L = 784) would make those products
        too large; there A leaves out the coupling L, and with a linear output layer one
        n_L x n_L matrix serves every sample.
        """
        p, n, L = self.p, self.offsets, self.net.num_layers
        N = n[L]
        g = 1.0 if p.leak == "integral" else 1.0 - p.alpha * p.k_p
        a_v, a_u, beta = 1.0 + c / p.tau_v, 1.0 + c * p.alpha / p.tau_u, c / p.tau_v
        kappa = p.k_p + c * g / (p.tau_u * a_u)
        n_L = N - n[L - 1]
        if n_L > COUPLED_MAX_OUTPUTS:
            return self._uncoupled_solve(y, a_v, a_u, beta, kappa)
        if self.paths is None:
            slopes, paths = self._loop_paths()
            # with storage for Kᵀ (below), formed anew at every step into the same memory
            self.__dict__["paths"] = (slopes, paths, paths.new_empty(paths.shape[1:]))
        slopes, paths, KT_store = self.paths
        eye = torch.eye(n_L, dtype=y.dtype, device=y.device)
        D_L = slopes[L - 1]
        # H = (I a_v - βL)⁻¹ Q = Q / a_v + K per sample, K = Σ_k β^k / a_v^{k+1} L^k Q on the
        # layers above the first (L^k Q vanishes on the first k), held transposed as Kᵀ (B, n_L,
        # N - n_1): the products Kᵀ-row × z run as (1 × n_L)(n_L × (N - n_1)) per sample, where
        # bmm's (N - n_1) × n_L matrix-vector form is some 50 times slower on the CPU. P is the
        # output block of H.
        KT = None
        for k in range(1, L):
            weight = beta ** k / a_v ** (k + 1)
            if KT is None:
                KT = torch.mul(paths[0], weight, out=KT_store)
            else:
                KT[:, :, n[k] - n[1]:].add_(paths[k - 1][:, :, n[k] - n[1]:], alpha=weight)
        P = self.Q[n[L - 1]:N].div(a_v).expand(y.shape[0], -1, -1)
        if KT is not None:
            P = P + KT[:, :, n[L - 1] - n[1]:].transpose(1, 2)
        S_inv = torch.linalg.inv(torch.mul(P, D_L.unsqueeze(1)).mul_(beta * kappa).add_(eye))
        WT = self.WT_tau    # W_iᵀ / τ_v: forward substitution with β τ_v = c
        QT = self.QT

        def solve(b, scale: float = 1.0, out: torch.Tensor | None = None):
            """x = (I - cA)⁻¹ (scale · b), written into ``out`` when given."""
            out = torch.empty_like(b) if out is None else out
            w_v, w_u = out[:, :N], out[:, N:]
            b_u = b[:, N:]
            # t = (I a_v - βL)⁻¹ b_v by forward substitution, into w_v
            torch.mul(b[:, :n[1]], 1.0 / a_v, out=w_v[:, :n[1]])
            for i in range(1, L):
                below = w_v[:, n[i - 1]:n[i]] * slopes[i - 1]
                torch.addmm(b[:, n[i]:n[i + 1]], below, WT[i], beta=1.0 / a_v,
                            alpha=c / a_v, out=w_v[:, n[i]:n[i + 1]])
            # (I + βκ P D_L) w_L = t_L + (β / a_u) P b_u
            rhs = torch.baddbmm(w_v[:, n[L - 1]:N].unsqueeze(2), P, b_u.unsqueeze(2),
                                alpha=beta / a_u)
            w_L = torch.bmm(S_inv, rhs)                                      # (B, n_L, 1)
            z = torch.addcmul(b_u / a_u, D_L, w_L.squeeze(2), value=-kappa)   # w_u - k_p D w_L
            w_v.addmm_(z, QT, alpha=beta / a_v)                                # + β H z
            if KT is not None:
                w_v[:, n[1]:].add_(torch.bmm(z.unsqueeze(1), KT).squeeze(1), alpha=beta)
            torch.addcmul(z, D_L, w_L.squeeze(2), value=p.k_p, out=w_u)
            return out.mul_(scale)

        return solve

    def _loop_paths(self):
        """(slopes, paths): the slopes φ_i'(v_i^-) per layer, and (L^k Q)ᵀ for k = 1..L-1 on the
        layers above the first, stacked as (L-1, B, n_L, N - n_1), with (L^k Q)_i = W_i D_{i-1}
        (L^{k-1} Q)_{i-1}: the feedback that reaches layer i through k feed-forward synapses."""
        net, n, L = self.net, self.offsets, self.net.num_layers
        slopes = [net.dphi(i, self.origin[:, n[i]:n[i + 1]]) for i in range(L)]
        B, n_L = self.x.shape[0], self.Q.shape[1]
        paths = torch.zeros(L - 1, B, n_L, n[L] - n[1], dtype=self.Q.dtype, device=self.Q.device)
        prev = self.Q.T.expand(B, -1, -1)   # (L^0 Q)ᵀ, on all layers
        shift = 0                           # column of layer 1 in prev
        for k in range(L - 1):
            for i in range(k + 1, L):      # L^k Q is zero in the first k layers
                below = prev[:, :, n[i - 1] - shift:n[i] - shift] * slopes[i - 1].unsqueeze(1)
                paths[k, :, :, n[i] - n[1]:n[i + 1] - n[1]] = fold_matmul(below, net.W[i].T)
            prev, shift = paths[k], n[1]
        return slopes, paths

    def _uncoupled_solve(self, y, a_v, a_u, beta, kappa):
        """The stiff solve without the feed-forward coupling L (wide outputs, see
        :meth:`stiff_part`): a diagonal plus rank n_L, by the Woodbury identity."""
        p, n, L = self.p, self.offsets, self.net.num_layers
        Q_L = self.Q[n[L - 1]:n[L]]
        eye = torch.eye(Q_L.shape[0], dtype=y.dtype, device=y.device)
        # (n_L x n_L, well conditioned: a_v ≥ 1): inverted once, applied per stage; one matrix
        # for all samples with a linear output layer (D = I), else one per sample
        if self.linear_output:
            D = None
            inverse_T = torch.linalg.inv(a_v * eye + (beta * kappa) * Q_L).T
        else:
            v_L = self.origin[:, n[L - 1]:n[L]] + self.scale * y[:, n[L - 1]:n[L]]
            D = self.net.dphi(L - 1, v_L)
            inverse = torch.linalg.inv(a_v * eye + (beta * kappa) * D.unsqueeze(2) * Q_L)

        def solve(b, scale: float = 1.0, out: torch.Tensor | None = None):
            """x = (I - cA)⁻¹ (scale · b), written into ``out`` when given."""
            b_v, b_L, b_u = b[:, :n[L]], b[:, n[L - 1]:n[L]], b[:, n[L]:]
            rhs = torch.addmm(b_L, b_u, Q_L.T, alpha=beta / a_u)
            if D is None:
                w_L = rhs @ inverse_T                                         # D x_L / scale
            else:
                w_L = torch.bmm(inverse, (D * rhs).unsqueeze(2)).squeeze(2)
            z = torch.add(b_u / a_u, w_L, alpha=-kappa)                     # x_u - k_p D x_L
            out = torch.empty_like(b) if out is None else out
            torch.addmm(b_v, z, self.QT, beta=scale / a_v, alpha=beta * scale / a_v,
                        out=out[:, :n[L]])
            torch.add(z, w_L, alpha=p.k_p, out=out[:, n[L]:]).mul_(scale)
            return out

        return solve

    def attach(self, integral: "PlasticityIntegral", fixed_grid: bool) -> None:
        """Feed every step the solver takes into ``integral``.

        torchdiffeq calls ``callback_accept_step(t0, y0, dt)`` after each accepted step of an
        adaptive method and ``callback_step`` before each step of a fixed-grid method.
        """
        def node(t0, y0, dt):
            integral.add_node(float(t0), y0, float(dt))
        setattr(self, "callback_step" if fixed_grid else "callback_accept_step", node)


def plasticity_signals(dyn: WakeDynamics, y: torch.Tensor):
    """Δ = [Δ_1, ..., Δ_L] as one (B, Σ n_i) tensor and the presynaptic rates [r_0 = x, r_1, ...,
    r_{L-1}] at the scaled state ``y`` of ``dyn``, in departures from the feed-forward state (no
    cancellation in float32): with z_B the scaled basal departure, Δ = s (Δr(y) - Δr(z_B)) (eq. 5)
    or s (y - z_B) (eq. 9). When the vector field's last evaluation was at ``y``, its rate
    departure is reused and z_B read back from eq. (1): z_B = τ_v dy/dt + y - Q u / s."""
    net, n = dyn.net, dyn.offsets
    N, L, s = n[-1], net.num_layers, dyn.scale
    y_v = y[:, :N]
    memo = dyn.memo if dyn.memo is not None and dyn.memo[0] is y else None
    if memo is not None:
        _, dr, u, dy = memo
        z_basal = torch.addmm(torch.add(y_v, dy[:, :N], alpha=dyn.p.tau_v), u, dyn.QT,
                              alpha=-1.0)
        z_basal[:, :n[1]] = 0.0                # exact: the constant input's layer
    else:
        dr = dyn.rate_departure(y_v)
        z_basal = torch.cat([torch.zeros_like(y_v[:, :n[1]])] +
                            [dr[:, n[i - 1]:n[i]] @ net.W[i].T for i in range(1, L)], dim=1)
    if dyn.p.plasticity == "voltage":
        delta = torch.sub(y_v, z_basal).mul_(s)
    else:
        delta = dyn.rate_departure(z_basal).neg_().add_(dr).mul_(s)
    pre = [dyn.x] + [torch.add(dyn.r_ff[:, n[i]:n[i + 1]], dr[:, n[i]:n[i + 1]], alpha=s)
                     for i in range(L - 1)]
    return delta, pre


class PlasticityIntegral:
    """Time integral of the eq. (5) signal, by the trapezoidal rule over the solver's steps.

    With Δ_i = φ(v_i) - φ(v_B,i) (eq. 5; ``v_i - v_B,i`` for eq. 9) it holds

        d_i = ∫ Δ_i dt               per sample, (B, n_i)
        M_i = ∫ Δ_iᵀ r_{i-1} dt      summed over the batch, (n_i, n_{i-1}), for i ≥ 2;

    layer 1 needs no M_1 because r_0 = x is constant: ∫ Δ_1ᵀ x dt = d_1ᵀ x. Step node t_k enters
    with the weight (t_{k+1} - t_{k-1})/2 once both neighbouring steps are accepted, so nothing but
    the sums and one pending node is kept: memory is independent of simulated time. The node at
    t = 0 is the feed-forward state, where Δ_i = 0 (v_i = v_B,i, eq. 2).
    """

    def __init__(self, dyn: WakeDynamics, t_end: float):
        self.dyn = dyn
        self.t_end = t_end
        net = dyn.net
        self.d_all = torch.zeros(dyn.x.shape[0], dyn.offsets[-1], dtype=net.dtype,
                                 device=net.device)
        self.d = net.split_layers(self.d_all)      # d_i as views of one (B, Σ n_i) tensor
        self.M = [torch.zeros(net.layer_sizes[i + 1], net.layer_sizes[i], dtype=net.dtype,
                              device=net.device) for i in range(1, net.num_layers)]
        self.t_prev = None
        self.pending = None     # (signals, weight so far) of the last node of add_step

    def _add(self, signals, weight: float):
        delta, pre = signals
        n = self.dyn.offsets
        self.d_all.add_(delta, alpha=weight)
        for i in range(1, len(pre)):
            self.M[i - 1].addmm_(delta[:, n[i]:n[i + 1]].T, pre[i], alpha=weight)

    def add_node(self, t0: float, y0, dt: float):
        """Node t0 of an accepted step [t0, t0 + dt] (the last step may end beyond t_end)."""
        left = 0.0 if self.t_prev is None else t0 - self.t_prev
        self._add(plasticity_signals(self.dyn, y0), 0.5 * (left + min(dt, self.t_end - t0)))
        self.t_prev = t0

    def add_step(self, t0: float, dt: float, y1):
        """An accepted step [t0, t0 + dt] that ends in ``y1``, evaluated last by the vector field
        (so its rates and basal potentials are reused). A step beyond t_end adds no node: the
        final state comes through :meth:`finish`."""
        right = min(dt, self.t_end - t0)
        if self.pending is not None:
            self._add(self.pending[0], self.pending[1] + 0.5 * right)
            self.pending = None
        self.t_prev = t0
        if t0 + dt <= self.t_end:
            self.pending = (plasticity_signals(self.dyn, y1), 0.5 * dt)
            self.t_prev = t0 + dt

    def add_rectangle(self, y, dt: float):
        """Left-rectangle node: the authors' Euler sum Σ_k Δ(t_k) dt."""
        self._add(plasticity_signals(self.dyn, y), dt)

    def finish(self, y_end):
        """Close the rule with the last node, the final state at t_end."""
        if self.pending is not None:
            self._add(*self.pending)
        elif self.t_prev is not None:
            self._add(plasticity_signals(self.dyn, y_end), 0.5 * (self.t_end - self.t_prev))
