"""One realisation of a network on hardware: every device value drawn once.

:func:`realise` maps each layer's W_i, b_i and Q_i onto conductance pairs and draws the devices'
programming noise, variation, drift and read noise (:mod:`dfc_analog.hardware.devices`), the
amplifiers' input offsets and the activation circuits' mismatch, all from one
``torch.Generator`` seeded by the named stream ``realisation`` (never the global RNG). The
torch emulation (:mod:`dfc_analog.model.hardware`) and the crossbar netlist
(:mod:`dfc_analog.circuit.crossbar`) read the same :class:`Realisation`, so the two simulators
can be held against each other sample for sample.

The circuit this describes (neuron k of layer i):

    soma       inverting leaky integrator: op-amp with R_f ‖ C_f (τ_v = R_f C_f) from its
               virtual ground to its output v; into the virtual ground flow the crossbar columns
               of W_i (rows: the rates of layer i−1), of the bias b_i (rows: ±V_ref, V_ref =
               v_scale) and of Q_i (rows: the control signals u)
    synapse    w = R_f (G⁺ − G⁻): because the soma inverts, G⁺ connects to the inverted row −r
               and G⁻ to the row r; each G in [g_min, g_max], quantised to 2^bits states
    rate       differential pair I_b φ(g_k (v − δ_k) / v_scale), I_b = v_scale / R_r, into two
               transimpedance stages (feedback R_r) that drive the rows r and −r of the next
               crossbar
    scale      R_f = max |w| / (g_max − g_min) over the layer (``weight_scale = 'layer'``) or
               over each neuron's row of [W_i, b_i, Q_i] (``'column'``, one crossbar column);
               with ``drift_compensation`` times Σ|G⁺ − G⁻| programmed / Σ|G⁺ − G⁻| realised
               per layer (one calibration read)
    controller per output m, eq. (4) on four op-amps: a difference amplifier (the error), an
               inverting integrator, an inverting proportional stage and an inverting summer
               (:mod:`dfc_analog.model.hardware`)

All conductances are in S, R_f in Ω, offsets in V; tensors are float64 on the CPU.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from dfc_analog.config.seeds import generator
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.devices import program, read_sigma
from dfc_analog.hardware.spec import HardwareSpec


def device_generator(seed: int) -> torch.Generator:
    """The generator of the named stream ``realisation`` (:mod:`dfc_analog.config.seeds`):
    independent of the streams that initialise the network or shuffle the data under the same
    run seed."""
    return generator("realisation", seed)


@dataclass
class LayerRealisation:
    """The devices of one layer i (n_i neurons, fed by n_{i-1} rows and n_L control rows)."""

    G_pos: torch.Tensor        # (n_i, n_{i-1}) on the inverted rows −r_{i-1}
    G_neg: torch.Tensor        # (n_i, n_{i-1}) on the rows r_{i-1}
    Gb_pos: torch.Tensor       # (n_i,) on −V_ref
    Gb_neg: torch.Tensor       # (n_i,) on +V_ref
    GQ_pos: torch.Tensor       # (n_i, n_L) on −u
    GQ_neg: torch.Tensor       # (n_i, n_L) on +u
    R_f: torch.Tensor          # (n_i,) soma feedback resistance, Ω
    soma_offset: torch.Tensor  # (n_i,) input offset of the soma op-amp, V
    rate_offset_pos: torch.Tensor  # (n_i,) offset of the op-amp driving the row r
    rate_offset_neg: torch.Tensor  # (n_i,) offset of the op-amp driving the row −r
    act_gain: torch.Tensor     # (n_i,) differential-pair gain g_k (1 when matched)
    act_offset: torch.Tensor   # (n_i,) differential-pair input offset δ_k, V
    # read-noise process (spec.synapse.read_process): σ_read (S) of every device, in the
    # layout of (G_pos, G_neg, Gb_pos, Gb_neg, GQ_pos, GQ_neg); None: no process
    read_sigma: tuple | None = None

    @property
    def column_conductance(self) -> torch.Tensor:
        """G_Σ per neuron: every conductance into the soma's virtual ground (S)."""
        return (self.G_pos + self.G_neg).sum(1) + self.Gb_pos + self.Gb_neg + \
            (self.GQ_pos + self.GQ_neg).sum(1)

    @property
    def noise_gain(self) -> torch.Tensor:
        """1 + R_f G_Σ: the soma stage's noise gain (its offset and gain-error multiplier)."""
        return 1.0 + self.R_f * self.column_conductance


@dataclass
class Realisation:
    """Every device value of one realisation (module docstring), and what it was drawn from."""

    spec: HardwareSpec
    seed: int
    v_scale: float             # V per model unit; V_ref = v_scale
    resistance: float          # R_r of the rate stages, Ω (I_b = v_scale / R_r)
    activations: list
    layers: list = field(default_factory=list)
    controller_offset: torch.Tensor | None = None   # (4, n_L) V: error, integrator,
    #                                                 proportional and summing op-amps

    @property
    def layer_sizes(self) -> list:
        return [self.layers[0].G_pos.shape[1]] + [l.G_pos.shape[0] for l in self.layers]

    @property
    def read_interval(self) -> float | None:
        """The read-noise process's sample interval in s, or None without a process."""
        if all(l.read_sigma is None for l in self.layers):
            return None
        return self.spec.synapse.read_interval

    def without_read_process(self) -> "Realisation":
        """The same devices with the read-noise process off (the deterministic part of the
        circuit, compared sample for sample)."""
        return dataclasses.replace(self, layers=[dataclasses.replace(l, read_sigma=None)
                                                 for l in self.layers])

    def effective_weights(self):
        """(W_i, b_i, Q_i) per layer that the realised crossbars implement with ideal op-amps:
        w = R_f (G⁺ − G⁻), b = R_f (G_b⁺ − G_b⁻) V_ref / v_scale."""
        out = []
        for l in self.layers:
            R = l.R_f[:, None]
            out.append((R * (l.G_pos - l.G_neg), l.R_f * (l.Gb_pos - l.Gb_neg),
                        R * (l.GQ_pos - l.GQ_neg)))
        return out

    def conductances(self) -> dict:
        """Every device conductance per layer, ``W1`` .. and ``Q1`` .. (flattened pairs, S):
        for histograms and statistics."""
        out = {}
        for i, l in enumerate(self.layers, start=1):
            out[f"W{i}"] = torch.cat([l.G_pos.reshape(-1), l.G_neg.reshape(-1),
                                      l.Gb_pos, l.Gb_neg])
            out[f"Q{i}"] = torch.cat([l.GQ_pos.reshape(-1), l.GQ_neg.reshape(-1)])
        return out

    def device_count(self) -> int:
        return sum(int(g.numel()) for g in self.conductances().values())


def conductance_targets(weights: torch.Tensor, scale: torch.Tensor, spec: HardwareSpec):
    """(G⁺, G⁻) targets of signed ``weights`` (…, n) at conductance per unit weight ``scale``
    (broadcast over the rows): the magnitude on one device of the pair, g_min on the other,
    quantised to the spec's 2^bits states."""
    s = spec.synapse
    span = s.g_max - s.g_min
    pos = weights.clamp(min=0.0) * scale
    neg = (-weights).clamp(min=0.0) * scale
    if s.levels is not None:
        step = span / (s.levels - 1)
        pos = torch.round(pos / step) * step
        neg = torch.round(neg / step) * step
    return (s.g_min + pos).clamp(max=s.g_max), (s.g_min + neg).clamp(max=s.g_max)


def realise(W: list, b: list, Q: list, activations: list, spec: HardwareSpec, seed: int,
            v_scale: float = 1.0, resistance: float = 1e4) -> Realisation:
    """Draw one realisation of the network (W_i, b_i, Q_i per layer, any float tensors) on
    ``spec``'s hardware (module docstring). Draw order, all from :func:`device_generator`: per
    layer W⁺, W⁻, b⁺, b⁻, Q⁺, Q⁻ (:func:`~dfc_analog.hardware.devices.program`), then the soma,
    r-row and −r-row amplifier offsets and the activation gain and offset mismatch; after every
    layer, the input offsets of the controller's op-amps (error, integrator, proportional,
    summer; rows of ``controller_offset``), so that the layers' devices do not depend on
    them. A read-noise process draws nothing here: each device's σ_read is stored
    (``read_sigma``), its path is drawn per phase from the stream ``read_noise``."""
    if not (v_scale > 0 and resistance > 0):
        raise ConfigError(f"v_scale and resistance must be positive, got {v_scale} and "
                          f"{resistance}.")
    gen = device_generator(seed)
    s, amp, act = spec.synapse, spec.amplifier, spec.activation
    span = s.g_max - s.g_min
    layers = []
    for Wi, bi, Qi in zip(W, b, Q):
        Wi, bi, Qi = (t.detach().to("cpu", torch.float64) for t in (Wi, bi, Qi))
        n = Wi.shape[0]
        every = torch.cat([Wi.abs(), bi.abs()[:, None], Qi.abs()], dim=1)
        peak = every.amax(dim=1) if s.weight_scale == "column" else every.max().expand(n)
        peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        scale = (span / peak)[:, None]
        pairs, programmed = [], 0.0
        for M in (Wi, bi[:, None], Qi):
            pos, neg = conductance_targets(M, scale, spec)
            programmed += float((pos - neg).abs().sum())
            pairs += [program(pos, s, gen), program(neg, s, gen)]
        sigmas = tuple(read_sigma(g, s) for g in pairs) if s.read_process else None
        R_f = 1.0 / scale[:, 0]
        if s.drift_compensation:
            realised = sum(float((pairs[k] - pairs[k + 1]).abs().sum()) for k in (0, 2, 4))
            R_f = R_f * (programmed / realised if realised > 0 else 1.0)

        def normal(sigma):
            z = torch.randn(n, generator=gen, dtype=torch.float64)
            return sigma * z if sigma > 0 else torch.zeros(n, dtype=torch.float64)

        offsets = [normal(amp.offset) for _ in range(3)]
        layers.append(LayerRealisation(
            G_pos=pairs[0], G_neg=pairs[1], Gb_pos=pairs[2][:, 0], Gb_neg=pairs[3][:, 0],
            GQ_pos=pairs[4], GQ_neg=pairs[5], R_f=R_f,
            soma_offset=offsets[0], rate_offset_pos=offsets[1], rate_offset_neg=offsets[2],
            act_gain=1.0 + normal(act.gain_mismatch), act_offset=normal(act.offset_mismatch),
            read_sigma=None if sigmas is None else
            (sigmas[0], sigmas[1], sigmas[2][:, 0], sigmas[3][:, 0], sigmas[4], sigmas[5])))
    n_L = Q[-1].shape[1]
    controller_offset = amp.offset * torch.randn(4, n_L, generator=gen, dtype=torch.float64) \
        if amp.offset > 0 else torch.zeros(4, n_L, dtype=torch.float64)
    return Realisation(spec, int(seed), float(v_scale), float(resistance), list(activations),
                       layers, controller_offset)


def realise_network(net, spec: HardwareSpec, seed: int, v_scale: float = 1.0,
                    resistance: float = 1e4) -> Realisation:
    """:func:`realise` of a :class:`~dfc_analog.model.network.DFCNetwork` (its W, b, Q)."""
    return realise(list(net.W), list(net.b), list(net.Q), list(net.activations), spec, seed,
                   v_scale, resistance)
