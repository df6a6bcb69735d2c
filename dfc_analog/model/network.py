"""The layered network of paper §2.1: forward weights W_i, biases b_i, feedback weights Q_i.

Shapes (batch first): r_0 = x is (B, n_0); v_i, r_i are (B, n_i); W_i is (n_i, n_{i-1});
Q_i is (n_i, n_L). Layers are numbered 1..L in the paper and stored 0-indexed here.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from dfc_analog.config.options import Config

# φ and its derivative φ' for each activation name; φ' is written in terms of the rate r = φ(v)
# (and v), so that where r is known it costs no second evaluation of φ (same values to the bit).
_PHI = {
    "tanh": (torch.tanh, lambda v, r: 1.0 - r ** 2),
    "linear": (lambda v: v, lambda v, r: torch.ones_like(v)),
    "relu": (torch.relu, lambda v, r: (v > 0).to(v.dtype)),
    "sigmoid": (torch.sigmoid, lambda v, r: r * (1.0 - r)),
}


def all_finite(tensors) -> bool:
    """Whether every tensor holds finite numbers only: one sum per tensor and one wait for the
    device (a NaN or ±inf makes its tensor's sum non-finite; a sum that overflows on finite
    numbers is checked again element by element)."""
    tensors = list(tensors)
    if not tensors or bool(torch.isfinite(torch.stack([t.detach().sum() for t in tensors])).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def fold_matmul(T: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """T (..., k) @ M (k, m) as one matrix product over all leading dimensions of T. torch's
    matmul does not fold a batched T when M requires grad (a weight), even where no graph is
    recorded, and its batched product was then 1.35x slower (1280 × 256 × 256 on one core)."""
    return (T.reshape(-1, T.shape[-1]) @ M).view(*T.shape[:-1], M.shape[-1])


def activation_slope(name: str, v: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
    """φ'(v) of activation ``name``; ``r``: φ(v) where the caller has it."""
    phi, dphi = _PHI[name]
    return dphi(v, phi(v) if r is None else r)


def phi_departure(name: str, v0: torch.Tensor, r0: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """φ(v0 + d) - φ(v0) for r0 = φ(v0), accurate relative to the departure itself (the plain
    difference loses all digits of a small d to the rounding of φ(v0))."""
    if name == "linear":
        return d.clone()
    if name == "tanh":
        return tanh_departure(small_tanh_(d.clone()), r0, 1.0 - r0 * r0)
    if name == "sigmoid":     # σ(a + d) - σ(a) = -expm1(-d) σ(a + d) (1 - σ(a))
        return torch.expm1(-d).neg_().mul_(torch.sigmoid(v0 + d)).mul_(1.0 - r0)
    if name == "relu":        # exact where both sides are active
        return torch.where((v0 > 0) & (v0 + d > 0), d, torch.relu(v0 + d) - r0)
    raise ValueError(f"unknown activation '{name}'")


# Below this |d| the odd Taylor polynomial d - d³/3 + 2d⁵/15 gives tanh d in float32: its
# truncation, 17 d⁷/315, is under 1.5e-8 of d, below float32's rounding (6e-8).
SMALL_TANH = 0.08


def small_tanh_(d: torch.Tensor) -> torch.Tensor:
    """tanh d in place, for departures d of the order of the nudge (the wake phase's rate
    departures). On the CPU in float32, where torch's tanh costs about 4 ns per element, a
    tensor whose every |d| < SMALL_TANH takes the Taylor polynomial instead (five elementwise
    operations; maximum relative error 9e-8 against 6e-8 of torch's tanh); else, and in float64 or
    on a GPU, torch's tanh."""
    if d.dtype == torch.float32 and d.device.type == "cpu" and d.numel():
        low, high = torch.aminmax(d)
        if max(-float(low), float(high)) < SMALL_TANH:
            d2 = torch.square(d)
            return d.mul_(d2.mul(2.0 / 15.0).sub_(1.0 / 3.0).mul_(d2).add_(1.0))
    return d.tanh_()


def tanh_departure(t: torch.Tensor, r0: torch.Tensor, gain: torch.Tensor,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """tanh(a + d) - tanh(a) = tanh d (1 - tanh²a) / (1 + tanh a tanh d), from t = tanh d (which
    it overwrites), r0 = tanh a and gain = 1 - tanh²a (or a multiple of it, which scales the
    result); written into ``out`` when given."""
    denominator = torch.mul(r0, t).add_(1.0)
    return torch.div(t.mul_(gain), denominator, out=out)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


class DFCNetwork(nn.Module):
    """Feed-forward weights, feedback weights and the nonlinearities of a DFC network.

    ``W[i]`` and ``b[i]`` are trainable parameters; ``Q[i]`` are parameters without autograd
    (they are set by the initialisation or by a local feedback rule, never by backprop).
    """

    def __init__(self, layer_sizes, activations, bias: bool = True,
                 feedback_init: str = "weight_product", generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.layer_sizes = list(layer_sizes)
        self.activations = list(activations)
        self.has_bias = bias
        L = len(self.layer_sizes) - 1
        n = self.layer_sizes
        self.W = nn.ParameterList()
        self.b = nn.ParameterList()
        for i in range(L):
            # Xavier normal (gain 1), as in every experiment of the paper; biases start at zero.
            std = math.sqrt(2.0 / (n[i] + n[i + 1]))
            w = torch.randn(n[i + 1], n[i], generator=generator, dtype=torch.float64) * std
            self.W.append(nn.Parameter(w.to(dtype=dtype, device=device)))
            self.b.append(nn.Parameter(torch.zeros(n[i + 1], dtype=dtype, device=device),
                                       requires_grad=bias))
        self.Q = nn.ParameterList(
            [nn.Parameter(q, requires_grad=False)
             for q in self._initial_feedback(feedback_init, generator, dtype, device)])

    @classmethod
    def from_config(cls, cfg: Config, generator: torch.Generator | None = None) -> "DFCNetwork":
        return cls(cfg.layer_sizes, cfg.activations, cfg.bias, cfg.initial_feedback, generator,
                   resolve_dtype(cfg.dtype), cfg.device)

    def _initial_feedback(self, kind, generator, dtype, device):
        n, L = self.layer_sizes, self.num_layers
        Q = [None] * L
        Q[L - 1] = torch.eye(n[L], dtype=torch.float64)
        for i in range(L - 2, -1, -1):
            if kind == "weight_product":  # Q_i = W_{i+1}ᵀ ... W_Lᵀ (paper §6, "fixed" variants)
                Q[i] = self.W[i + 1].detach().cpu().to(torch.float64).T @ Q[i + 1]
            else:
                std = math.sqrt(2.0 / (n[i + 1] + n[L]))
                Q[i] = torch.randn(n[i + 1], n[L], generator=generator, dtype=torch.float64) * std
        return [q.to(dtype=dtype, device=device) for q in Q]

    # ---------------------------------------------------------------------------------------
    def nonfinite_weights(self, kinds: str = "WbQ") -> list:
        """Names (W1, b2, Q3, ...; layers 1..L) of the weight tensors holding NaN or ±inf,
        among the kinds named in ``kinds`` ('W', 'b', 'Q')."""
        named = [(f"{name}{i + 1}", t) for name, tensors in (("W", self.W), ("b", self.b),
                                                              ("Q", self.Q))
                 if name in kinds for i, t in enumerate(tensors)]
        if all_finite([t for _, t in named]):
            return []
        return [name for name, t in named if not bool(torch.isfinite(t).all())]

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def dtype(self) -> torch.dtype:
        return self.W[0].dtype

    @property
    def device(self) -> torch.device:
        return self.W[0].device

    def phi(self, i: int, v: torch.Tensor) -> torch.Tensor:
        """r_i = φ_i(v_i) for layer index i (0-based)."""
        return _PHI[self.activations[i]][0](v)

    def dphi(self, i: int, v: torch.Tensor, r: torch.Tensor | None = None) -> torch.Tensor:
        """φ_i'(v_i); ``r``: φ_i(v_i) where the caller has it (saves evaluating φ again)."""
        return activation_slope(self.activations[i], v, r)

    def basal(self, i: int, r_prev: torch.Tensor) -> torch.Tensor:
        """Basal compartment v_B,i = W_i r_{i-1} + b_i (batched)."""
        return torch.addmm(self.b[i], r_prev, self.W[i].T)

    def feedforward(self, x: torch.Tensor):
        """Equilibrium without feedback, eq. (2): lists v_i^-, r_i^- for i = 1..L."""
        vs, rs = [], []
        r = x
        for i in range(self.num_layers):
            v = self.basal(i, r)
            r = self.phi(i, v)
            vs.append(v)
            rs.append(r)
        return vs, rs

    def jacobian(self, vs) -> torch.Tensor:
        """J = [∂r_L/∂v_1, ..., ∂r_L/∂v_L] of Lemma 1 at voltages ``vs``: shape (B, n_L, Σ n_i)."""
        return torch.cat(self.jacobian_blocks(vs), dim=2)

    def jacobian_blocks(self, vs, rs=None, out: torch.Tensor | None = None) -> list:
        """The blocks J_i = ∂r_L/∂v_i of :meth:`jacobian`, each (B, n_L, n_i), computed
        analytically: J_L = diag φ_L'(v_L) and J_i = J_{i+1} W_{i+1} diag φ_i'(v_i). ``rs``: the
        rates φ_i(v_i) where the caller has them; ``out``: a (B, n_L, Σ n_i) tensor to hold J,
        whose slices the blocks then are (no copy into one tensor afterwards)."""
        L = self.num_layers
        rs = [None] * L if rs is None else rs
        blocks = [None] * L if out is None else self.split_layers(out)
        d_L = self.dphi(L - 1, vs[L - 1], rs[L - 1])
        if out is None:
            blocks[L - 1] = torch.diag_embed(d_L)
        else:
            blocks[L - 1].zero_().diagonal(dim1=-2, dim2=-1).copy_(d_L)
        for i in range(L - 2, -1, -1):
            d_i = self.dphi(i, vs[i], rs[i]).unsqueeze(1)
            if i == L - 2:
                # J_{L-1} = diag(φ_L') W_L diag(φ_{L-1}'), elementwise: no product with a
                # diagonal, and none with φ_L' = 1 of a linear output
                blocks[i] = torch.mul(self.W[i + 1], d_i, out=blocks[i])
                if self.activations[L - 1] != "linear":
                    blocks[i].mul_(d_L.unsqueeze(2))
                continue
            product = fold_matmul(blocks[i + 1], self.W[i + 1])
            blocks[i] = torch.mul(product, d_i, out=blocks[i])
        return blocks

    def jacobian_feedback(self, vs, rs=None) -> torch.Tensor:
        """J Q = Σ_i J_i Q_i (B, n_L, n_L) at voltages ``vs``, the controller's loop gain of
        Lemma 1, in forward mode: the n_L columns of each Q_i are pushed up through the layers
        above, D_i = φ_i'(v_i) ⊙ (W_i D_{i-1} + Q_i), J Q = D_L. The same products as
        :meth:`jacobian_blocks` (n_L directions through every layer above the first) without
        forming J (B × n_L × Σ n_i numbers) and then multiplying it by Q. ``rs``: the rates
        φ_i(v_i) where the caller has them."""
        D = None                                               # D_iᵀ: (B, n_L, n_i)
        for i, v in enumerate(vs):
            dphi = self.dphi(i, v, None if rs is None else rs[i]).unsqueeze(1)
            D = (self.Q[i].T * dphi if D is None
                 else fold_matmul(D, self.W[i].T).add_(self.Q[i].T).mul_(dphi))
        return D.transpose(1, 2)

    def times_feedback(self, J: torch.Tensor) -> torch.Tensor:
        """J Q (B, n_L, n_L) for a given J (B, n_L, Σ n_i), formed as (Qᵀ Jᵀ)ᵀ: with n_L short
        the BLAS is several times faster with the long side in the output."""
        B, n_L, N = J.shape
        return (self.feedback_matrix().T @ J.reshape(B * n_L, N).T).T.view(B, n_L, -1)

    def feedback_matrix(self) -> torch.Tensor:
        """Q = [Q_1; ...; Q_L] stacked over layers: shape (Σ n_i, n_L)."""
        return torch.cat(list(self.Q), dim=0)

    def split_layers(self, flat: torch.Tensor):
        """Split a (..., Σ n_i) tensor into the per-layer pieces (..., n_i)."""
        return list(torch.split(flat, self.layer_sizes[1:], dim=-1))
