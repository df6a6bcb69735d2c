"""Deployment: the feed-forward equilibrium (eq. 2 on the realised circuit) of R chips at once.

:meth:`HardwareModel.feedforward <dfc_analog.model.hardware.HardwareModel.feedforward>` solves
the settled feed-forward state of one realisation in closed form, layer by layer:

    o = (n_g V_os − J) / (1 + n_g / A₀),   a = φ(g_k (o − δ_k)),   n± = c (V_os± ± a),

with c = A₀ / (1 + A₀), n_g = 1 + R_f G_Σ the soma's noise gain and J the crossbar current
J = n⁻ A⁺ᵀ + n⁺ A⁻ᵀ + β (A = R_f G; rows n± of the layer below, ±x for layer 1; β the bias
pair). Since the rows of layer i − 1 are c (V_os± ± a), J is affine in a, and the whole stage
folds into one matrix and one bias per chip (:func:`fold`):

    o = a W̃ᵀ + b̃,   W̃ = c d (A⁺ − A⁻),   d = 1 / (1 + n_g / A₀)  (c = 1 for layer 1),
    b̃ = d (n_g V_os − β − c (V_os⁻' A⁺ᵀ + V_os⁺' A⁻ᵀ)),

where W̃ = d R_f (G⁺ − G⁻) is the realised weight with the op-amp's gain error and b̃ carries
the bias pair and every offset (with row-wire resistance the mesh couples a tile's columns and
n_g is a matrix N_g = I − diag(R_f) (S_W + S_Q) per layer, :mod:`dfc_analog.hardware.wires`:
d becomes D = (I + N_g / A₀)⁻¹, multiplying from the left). The activation mismatch folds in
as well: z = g_k (o − δ_k) = a (diag(g) W̃)ᵀ + g (b̃ − δ), a = φ(z). :class:`FoldedStack` holds diag(g) W̃ and g (b̃ − δ) of
R chips with a leading realisation dimension, and :meth:`FoldedStack.feedforward` evaluates all
of them on a batch of inputs with one batched matrix product per layer (float64, or float32 for
throughput). A chip whose settled state exceeds the rails (soma output o or rows n±, in model
units) is flagged in ``clipped`` instead of raising: its closed form no longer describes the
circuit. The rails are checked on each neuron's extremes over the samples (o and n± are affine
in z and a, so their largest magnitudes sit at the extremes of z and a).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware.batch import LAYER_FIELDS, RealisationStack, realise_network_stack
from dfc_analog.hardware.wires import wired_layers
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import rest_control
from dfc_analog.model.network import _PHI

BOUNDED = {"tanh": 1.0, "sigmoid": 1.0}       # sup |φ| of the bounded activations


@dataclass
class FoldedLayer:
    """One layer of R chips: z = a ``weight_t`` + ``bias`` with ``weight_t`` = (diag(g) W̃)ᵀ
    (R, n_in, n_out) and ``bias`` = g (b̃ − δ) (module docstring); every per-neuron tensor is
    (R, 1, n_out) so it broadcasts over samples. ``feedback`` (R, n_out, n_L) is the control's
    weight into z, diag(g d) R_f (G_Q⁺ − G_Q⁻) (the Q crossbar under the same soma stage)."""

    weight_t: torch.Tensor
    bias: torch.Tensor
    act_gain: torch.Tensor
    act_offset: torch.Tensor
    row_offset_pos: torch.Tensor
    row_offset_neg: torch.Tensor
    feedback: torch.Tensor
    activation: str

    def tensors(self) -> tuple:
        return (self.weight_t, self.bias, self.act_gain, self.act_offset, self.row_offset_pos,
                self.row_offset_neg, self.feedback)


@dataclass
class FoldedStack:
    """The folded feed-forward circuit of R chips (module docstring); ``row_gain`` is c and
    ``rail`` the op-amps' output limit in model units."""

    layers: list
    row_gain: float
    rail: float
    seeds: list

    def __len__(self) -> int:
        return self.layers[0].weight_t.shape[0]

    def to(self, dtype: torch.dtype | None = None, device=None) -> "FoldedStack":
        return FoldedStack([FoldedLayer(*(t.to(dtype=dtype, device=device) for t in l.tensors()),
                                        l.activation) for l in self.layers],
                           self.row_gain, self.rail, list(self.seeds))

    @torch.no_grad()
    def feedforward(self, x: torch.Tensor) -> tuple:
        """(r_L, clipped): the settled output rows r_L⁺ = c (V_os⁺ + a_L) of every chip, (R, B,
        n_L), and whether a chip's soma output or rows exceed the rails for any sample, (R,)
        bool. ``x`` (B, n_0) is shared by all chips; computed in the stack's dtype."""
        first = self.layers[0]
        a = x.to(dtype=first.weight_t.dtype, device=first.weight_t.device)
        R = len(self)
        clipped = torch.zeros(R, dtype=torch.bool, device=a.device)
        c = self.row_gain
        for l in self.layers:
            z = torch.baddbmm(l.bias, a.expand(R, *a.shape[-2:]), l.weight_t)
            if math.isfinite(self.rail):
                z_lo, z_hi = torch.aminmax(z, dim=1, keepdim=True)
                o = torch.cat([z_lo, z_hi], 1) / l.act_gain + l.act_offset
                clipped |= (o.abs() > self.rail).flatten(1).any(1)
            a = _PHI[l.activation][0](z)
            if math.isfinite(self.rail) and self._rows_may_clip(l):
                a_ext = torch.cat(torch.aminmax(a, dim=1, keepdim=True), 1)
                rows = torch.cat([l.row_offset_pos + a_ext, l.row_offset_neg - a_ext], 1)
                clipped |= (c * rows.abs() > self.rail).flatten(1).any(1)
            # the rows c (V_os± ± a) feed the next layer, whose W̃ and b̃ hold c and V_os±
        return c * (self.layers[-1].row_offset_pos + a), clipped

    def _rows_may_clip(self, layer: FoldedLayer) -> bool:
        """False when the rows c (V_os± ± a) stay inside the rails for any a the activation can
        give (|a| ≤ 1 for tanh and sigmoid), so they need no check."""
        bound = BOUNDED.get(layer.activation, math.inf)
        offset = torch.maximum(layer.row_offset_pos.abs(), layer.row_offset_neg.abs())
        return bool((self.row_gain * (offset + bound) > self.rail).any())


def fold(stack: RealisationStack, dtype: torch.dtype = torch.float64,
         params: ControllerParams | None = None) -> FoldedStack:
    """diag(g) W̃, g (b̃ − δ) and the per-neuron terms of every chip of ``stack`` (module
    docstring), computed in float64 and returned in ``dtype``. As in the emulation, column
    wires (IR drop) enter through their ladders' transfer conductances, and the op-amp
    controller at rest feeds its offsets' u_rest (:func:`~dfc_analog.model.hardware.rest_control`
    under ``params``, default :class:`ControllerParams`' defaults) through the Q crossbars:
    z gains diag(g d) R_f (G_Q⁺ − G_Q⁻) u_rest."""
    amp = stack.spec.amplifier
    A0 = float(amp.gain)
    c = 1.0 if math.isinf(A0) else A0 / (1.0 + A0)
    vs = stack.v_scale
    source = stack.layers
    synapse = stack.spec.synapse
    mesh = synapse.row_wire_resistance > 0
    if synapse.wire_resistance > 0 or mesh:         # chip by chip: one wire solve each
        chips = [wired_layers(stack.realisation(r)) for r in range(len(stack))]
        source = [{k: torch.stack([getattr(chip[i].layer, k) for chip in chips])
                   for k in LAYER_FIELDS} for i in range(len(stack.layers))]
        if mesh:                                    # N_g per chip and layer (R, n_i, n_i)
            for i, l in enumerate(source):
                S = torch.stack([chip[i].S_W + chip[i].S_Q for chip in chips])
                l["N_g"] = torch.eye(S.shape[-1], dtype=S.dtype) - l["R_f"][:, :, None] * S
    u_rest = None
    if stack.controller_offset is not None and not math.isinf(A0):
        u_rest = rest_control(stack.controller_offset / vs, A0,
                              params or ControllerParams())[..., -stack.layer_sizes[-1]:]
    layers, prev = [], None
    for i, l in enumerate(source):
        R_f = l["R_f"][:, :, None]
        A_pos, A_neg = R_f * l["G_pos"], R_f * l["G_neg"]
        beta = l["R_f"] * (l["Gb_neg"] - l["Gb_pos"])
        gain_in = 1.0 if prev is None else c
        shift = torch.zeros_like(beta) if prev is None else c * (
            torch.einsum("rj,rkj->rk", prev.row_offset_neg[:, 0], A_pos) +
            torch.einsum("rj,rkj->rk", prev.row_offset_pos[:, 0], A_neg))
        g, delta = l["act_gain"], l["act_offset"] / vs
        if mesh:                                    # D = (I + N_g / A₀)⁻¹ from the left
            N_g = l["N_g"]
            D = torch.linalg.inv(torch.eye(N_g.shape[-1], dtype=N_g.dtype) + N_g / A0)
            weight = (g * gain_in)[:, :, None] * (D @ (A_pos - A_neg))
            rhs = (N_g @ (l["soma_offset"] / vs)[..., None])[..., 0] - beta - shift
            bias = g * ((D @ rhs[..., None])[..., 0] - delta)
            feedback = g[:, :, None] * (D @ (l["R_f"][:, :, None] * (l["GQ_pos"] - l["GQ_neg"])))
        else:
            n_g = 1.0 + l["R_f"] * ((l["G_pos"] + l["G_neg"]).sum(2) + l["Gb_pos"] +
                                    l["Gb_neg"] + (l["GQ_pos"] + l["GQ_neg"]).sum(2))
            d = 1.0 / (1.0 + n_g / A0)
            weight = (g * gain_in * d)[:, :, None] * (A_pos - A_neg)
            bias = g * (d * (n_g * l["soma_offset"] / vs - beta - shift) - delta)
            feedback = (g * d)[:, :, None] * l["R_f"][:, :, None] * (l["GQ_pos"] - l["GQ_neg"])
        if u_rest is not None:
            bias = bias + torch.einsum("rkm,rm->rk", feedback, u_rest)
        prev = FoldedLayer(weight.transpose(1, 2).contiguous(), bias[:, None], g[:, None],
                           delta[:, None], (l["rate_offset_pos"] / vs)[:, None],
                           (l["rate_offset_neg"] / vs)[:, None], feedback,
                           stack.activations[i])
        layers.append(prev)
    folded = FoldedStack(layers, c, amp.rail / vs, list(stack.seeds))
    return folded if dtype == torch.float64 else folded.to(dtype)


@dataclass
class DeploymentResult:
    """Per chip (R,): the task loss, the classification error in % (None for real-valued
    targets) and whether the rails clip its feed-forward state."""

    seeds: list
    loss: torch.Tensor
    error: torch.Tensor | None
    clipped: torch.Tensor


@torch.no_grad()
def deploy(net, spec, seeds, x: torch.Tensor, y: torch.Tensor, loss: str,
           dtype: torch.dtype = torch.float32, chunk: int = 32, samples: int = 4096,
           workers: int = 1, v_scale: float = 1.0,
           params: ControllerParams | None = None) -> DeploymentResult:
    """Every chip of ``seeds`` (realisations of ``net`` on ``spec``) evaluated on the split
    ``x``, ``y``: ``chunk`` chips are drawn (by ``workers`` threads), folded and evaluated at a
    time, over ``samples`` samples at a time, so memory stays bounded whatever the number of
    chips. ``loss`` is 'mse' (mean over samples and outputs) or 'cross_entropy' (of the output
    rows as logits), as in training; ``params`` the controller's (its rest state, :func:`fold`)."""
    seeds = [int(s) for s in seeds]
    if spec.synapse.read_interval > 0:
        raise ConfigError(f"deployment evaluates the settled feed-forward state, which a "
                          f"read-noise process (read_interval {spec.synapse.read_interval:g} s "
                          f"in '{spec.name}') makes a random process in time: set "
                          f"read_interval = 0 (the static read noise) to deploy.")
    classes = not torch.is_floating_point(y)
    losses, errors, clipped = [], [], []
    for start in range(0, len(seeds), chunk):
        part = seeds[start:start + chunk]
        folded = fold(realise_network_stack(net, spec, part, v_scale, workers=workers), dtype,
                      params)
        total = torch.zeros(len(part), dtype=torch.float64)
        wrong = torch.zeros(len(part), dtype=torch.float64)
        clip = torch.zeros(len(part), dtype=torch.bool)
        for s in range(0, x.shape[0], samples):
            out, over = folded.feedforward(x[s:s + samples])
            target = y[s:s + samples].to(out.device)
            clip |= over.cpu()
            if classes:
                ce = torch.nn.functional.cross_entropy(
                    out.flatten(0, 1), target.repeat(len(part)), reduction="none")
                total += ce.view(len(part), -1).sum(1).double().cpu()
                wrong += (out.argmax(2) != target).sum(1).double().cpu()
            else:
                total += ((out - target.to(out.dtype)) ** 2).mean(2).sum(1).double().cpu()
        losses.append(total / x.shape[0])
        errors.append(100.0 * wrong / x.shape[0])
        clipped.append(clip)
    return DeploymentResult(seeds, torch.cat(losses), torch.cat(errors) if classes else None,
                            torch.cat(clipped))
