"""Hardware-aware training: the learning rules run on the realised circuit of one chip.

The design (``--hardware NAME|FILE``, ``--hardware-seed S``, for DFC, DFC-SS, DFC-SSA, DFA, BP):

* **The chip.** Chip S's amplifiers and activation circuits are drawn once: the soma and row
  op-amps' input offsets and the differential pairs' gain g_k and offset δ_k of realisation S
  (:func:`~dfc_analog.hardware.realise.realise`; these draws do not depend on the weights, so
  they are those of deploying any weights on chip S).
* **Writes.** The weights the optimizer holds (``net.W``, ``net.b``, ``net.Q``) are the targets
  the chip's programming circuit writes. Before every minibatch they are written through the
  devices: mapped on conductance pairs, quantised to the spec's states, bounded to
  [g_min, g_max], with programming noise and device variation drawn from the named seed stream
  ``hardware_write`` indexed by (S, pass, minibatch) — so a resumed run writes the same devices
  as an uninterrupted one. The devices are read right after programming (drift and its 1/f read
  noise act at deployment; ``dfc-sweep deploy`` measures them at any drift time).
* **The phases** (eqs. 1–5, or the BP forward pass) run on the realised circuit's effective
  network. With op-amps that settle much faster than the soma, each soma stage is at its
  closed-loop equilibrium at every instant (:mod:`dfc_analog.model.deployment`):
  o = d (R_f (G⁺ − G⁻) r + R_f (G_Q⁺ − G_Q⁻) u) + offsets, d = 1 / (1 + n_g / A₀). The stage's
  closed-loop time constant is τ_cl = n_g / (2π · GBW) (the loop gain A₀ / n_g of a one-pole
  op-amp); :func:`settling_ratio` gives max τ_cl / τ_v, which must be ≪ 1 for this folding to
  describe the wake dynamics (the steady states, DFC-SSA's and BP's forward pass, hold at any
  ratio). The circuit is then eq. (1) with W_eff = R_f (G⁺ − G⁻) / (1 + n_g / A₀), the offsets
  as bias shifts, and the activation mismatch φ(g (v − δ)) folded exactly: v' = g (v − δ) obeys
  τ_v dv'/dt = −v' + g (W_eff r + b − δ + Q_eff u), i.e. eq. (1) with diag(g) W_eff,
  g (b − δ) and diag(g) Q_eff. The output rows r_L = c (V_os⁺ + v'_L) (c = A₀ / (1 + A₀), linear
  output layer) fold into the last layer's W, b and Q. :func:`effective_network` returns that
  network; its feed-forward state equals HardwareModel.feedforward's.
* **Updates.** Each rule's update is computed on the effective network and applied to the
  targets (the rule sees the chip's real outputs; the programming circuit writes what the
  optimizer asks): for BP this is the usual hardware-aware baseline, the gradient through the
  non-ideal forward pass applied straight through to the programmed weights.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import torch

from dfc_analog.config.seeds import stream_seed
from dfc_analog.hardware.batch import stack_of
from dfc_analog.hardware.realise import Realisation, realise_network
from dfc_analog.hardware.spec import HardwareSpec
from dfc_analog.model.deployment import fold
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import DFCNetwork

CHIP_FIELDS = ("soma_offset", "rate_offset_pos", "rate_offset_neg", "act_gain", "act_offset")


@torch.no_grad()
def effective_network(real: Realisation, like: DFCNetwork,
                      params: ControllerParams | None = None) -> DFCNetwork:
    """The network whose eq. (1) is the realised circuit of ``real`` (module docstring), with
    ``like``'s structure, dtype and device; its last layer must be linear. The op-amp
    controller's rest output under ``params`` is part of the biases (:func:`fold`)."""
    if real.activations[-1] != "linear":
        raise ValueError("the output rows fold into a linear output layer only")
    folded = fold(stack_of(real), params=params)
    c = folded.row_gain
    net = copy.deepcopy(like)
    last = len(folded.layers) - 1
    for i, layer in enumerate(folded.layers):
        W, b, Q = layer.weight_t[0].T, layer.bias[0, 0], layer.feedback[0]
        if i == last:
            W, b, Q = c * W, c * (b + layer.row_offset_pos[0, 0]), c * Q
        for target, value in ((net.W[i], W), (net.b[i], b), (net.Q[i], Q)):
            target.copy_(value.to(dtype=target.dtype, device=target.device))
    return net


def settling_ratio(real: Realisation, tau_v: float, time_scale: float) -> float:
    """max over the soma stages of τ_cl / τ_v, τ_cl = n_g / (2π GBW) (module docstring), with
    τ_v in units of τ_u and ``time_scale`` seconds per τ_u; 0 for ideal op-amps."""
    gbw = real.spec.amplifier.gbw
    if math.isinf(gbw):
        return 0.0
    n_g = max(float(l.noise_gain.max()) for l in real.layers)
    return n_g / (2 * math.pi * gbw) / (tau_v * time_scale)


class HardwareChip:
    """Chip ``seed`` of ``spec`` that a network trains on (module docstring)."""

    def __init__(self, net: DFCNetwork, spec: HardwareSpec, seed: int, v_scale: float = 1.0,
                 params: ControllerParams | None = None):
        self.spec, self.seed, self.v_scale, self.params = spec, int(seed), float(v_scale), params
        synapse = dataclasses.replace(spec.synapse, drift_time=0.0, read_noise=0.0)
        self.write_spec = dataclasses.replace(spec, synapse=synapse)
        chip = realise_network(net, spec, self.seed, self.v_scale)
        self.chip = [{k: getattr(l, k) for k in CHIP_FIELDS} for l in chip.layers]
        self.controller_offset = chip.controller_offset

    def write(self, net: DFCNetwork, *index: int) -> Realisation:
        """The chip after writing ``net``'s weights, write ``index`` (pass, minibatch)."""
        real = realise_network(net, self.write_spec,
                               stream_seed("hardware_write", self.seed, *index), self.v_scale)
        real.layers = [dataclasses.replace(l, **parts) for l, parts in zip(real.layers, self.chip)]
        real.controller_offset = self.controller_offset
        real.seed = self.seed
        return real

    def effective(self, net: DFCNetwork, *index: int) -> DFCNetwork:
        """The effective network of write ``index`` of ``net``'s weights."""
        return effective_network(self.write(net, *index), net, self.params)
