"""The emulation: eqs. (1), (2) and (4) as the realised circuit computes them.

The circuit is the one :mod:`dfc_analog.hardware.realise` describes;
:mod:`dfc_analog.circuit.crossbar` writes the same equations as a netlist. In model units (voltages / v_scale, time in τ_u), for
neuron k of layer i with R_f its soma feedback resistance:

    crossbar    J = R_f I_src / v_scale, the current the rows would drive into a grounded column:
                J = A⁺ r⁻ + A⁻ r⁺ + (A_b⁻ − A_b⁺) − (A_Q⁺ − A_Q⁻) u,  A = R_f G (dimensionless),
                where r⁺, r⁻ are the rows (x, −x for layer 1) and the bias rows sit at ±V_ref
    op-amp      one pole: τ_p dn/dt = A₀ (V_os − V₋) − n, output o = clamp(n, ±rail)
                (τ_p = A₀ / 2π·gbw; the netlist's G–R–C stage and clamped buffer)
    soma        C_f from o to the virtual ground V₋ = p, R_f ‖ C_f, τ_v = R_f C_f:
                τ_v d(o − p)/dt = n_g p − J − o,   n_g = 1 + R_f G_Σ (the noise gain)
                (with an ideal op-amp p = 0 and this is eq. 1: τ_v dv/dt = −v + v_B + v_A)
    compartments v_B = s_W p − J_W, v_A = s_Q p − J_Q (the column currents times −R_f, s = R_f ΣG)
    rate        a = φ(g_k (o − δ_k)) from the differential pair; two transimpedance stages give
                the rows r⁺ ≈ a and r⁻ ≈ −a: τ_p dn±/dt = A₀ (V_os± − (r± ∓ a)) − n±
    controller  eq. (4) as in the ideal circuit: e = r* − r⁺_L, u = u_int + k_p e

The state is y = [n_soma, p, n⁺, n⁻, u_int] (B, 4 Σ n_i + n_L). The feed-forward equilibrium
(eq. 2 on this hardware) is solved in closed form, layer by layer:

    o = (n_g V_os − J) / (1 + n_g / A₀),   p = V_os − o / A₀,   n± = A₀ (V_os± ± a) / (1 + A₀);

its rails must not clip (:class:`~dfc_analog.errors.ConfigError` names the neurons). With the
``ideal`` spec none of this runs: the model keeps its own path, bit for bit.

Read noise as a process (``read_interval`` > 0, :mod:`dfc_analog.hardware.devices`): each
column's current gains Σ_j R_f σ_j ξ_j(t) r_j over its devices j (rows r_j in model units, the
bias rows at ±1), which has, at every t, the law of one term per column

    J_read = σ_col(t) ξ(t),   σ_col² = Σ_j (R_f σ_j)² r_j(t)²,

ξ unit samples on the grid t_k = k t_s (t_s = read_interval / time_scale τ_u), linear in
between (:class:`ReadNoisePath`, drawn from the named stream ``read_noise`` per noise seed and
sample); the crossbar netlist writes the same term as one B-source per column. It enters the
soma (the current into its virtual ground), not the compartments v_B and v_A, which are read
off the noiseless column currents in both simulators. The Dormand–Prince solve puts the grid
times as breakpoints (no step crosses one): ξ is continuous but has a kink at every t_k, and
within a segment f is smooth, so the 5(4) error estimate and the rtol / atol rule of the
deterministic comparison keep their meaning; a fixed-step solve would need the step of the
fastest (op-amp) time constant everywhere. Without a process nothing of this runs.
"""
from __future__ import annotations

import math

import torch

from dfc_analog.config.seeds import generator
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.realise import Realisation
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import _PHI
from dfc_analog.model.trajectory import Trajectory


class HardwareModel:
    """The realised circuit's equations (module docstring) for a :class:`Realisation`, under the
    controller ``params``, at ``time_scale`` seconds per τ_u."""

    def __init__(self, real: Realisation, params: ControllerParams, time_scale: float = 1e-6):
        amp = real.spec.amplifier
        if math.isinf(amp.gain):
            raise ConfigError(f"the hardware emulation needs op-amps of finite gain and "
                              f"gain-bandwidth; hardware '{real.spec.name}' has ideal ones (set "
                              f"[amplifier] gain and gbw).")
        self.real, self.p = real, params
        vs = real.v_scale
        self.sizes = real.layer_sizes
        self.gain = float(amp.gain)
        self.tau_p = amp.pole_time / time_scale
        self.rail = amp.rail / vs
        self.A_pos, self.A_neg, self.bias, self.A_Q, self.s_W, self.s_Q = [], [], [], [], [], []
        for l in real.layers:
            R = l.R_f[:, None]
            self.A_pos.append(R * l.G_pos)
            self.A_neg.append(R * l.G_neg)
            self.bias.append(l.R_f * (l.Gb_neg - l.Gb_pos))
            self.A_Q.append(R * (l.GQ_pos - l.GQ_neg))
            self.s_W.append(l.R_f * ((l.G_pos + l.G_neg).sum(1) + l.Gb_pos + l.Gb_neg))
            self.s_Q.append(l.R_f * (l.GQ_pos + l.GQ_neg).sum(1))

        def cat(name):
            return torch.cat([getattr(l, name) for l in real.layers]) / vs

        self.noise_gain = 1.0 + torch.cat(self.s_W) + torch.cat(self.s_Q)
        self.soma_offset, self.offset_pos, self.offset_neg = (
            cat("soma_offset"), cat("rate_offset_pos"), cat("rate_offset_neg"))
        self.act_offset = cat("act_offset")
        self.act_gain = torch.cat([l.act_gain for l in real.layers])
        self.s_Wc, self.s_Qc = torch.cat(self.s_W), torch.cat(self.s_Q)
        self.A_Qc = torch.cat(self.A_Q)          # (N, n_L): all apical columns at once
        self.offsets = [0]
        for n in self.sizes[1:]:
            self.offsets.append(self.offsets[-1] + n)
        self.read_interval = None if real.read_interval is None else \
            real.read_interval / time_scale
        if self.read_interval is not None:       # (R_f σ)² per device, per row kind
            self.read_pos, self.read_neg, self.read_bias, read_Q = [], [], [], []
            for l in real.layers:
                R2 = (l.R_f ** 2)[:, None]
                sp, sn, sbp, sbn, sqp, sqn = l.read_sigma
                self.read_pos.append(R2 * sp ** 2)       # on the rows −r (and −x)
                self.read_neg.append(R2 * sn ** 2)       # on the rows r (and x)
                self.read_bias.append(R2[:, 0] * (sbp ** 2 + sbn ** 2))   # rows ±V_ref
                read_Q.append(R2 * (sqp ** 2 + sqn ** 2))                  # rows ±u
            self.read_Q = torch.cat(read_Q)

    @property
    def N(self) -> int:
        return self.offsets[-1]

    def _layer(self, t: torch.Tensor, i: int) -> torch.Tensor:
        return t[..., self.offsets[i]:self.offsets[i + 1]]

    def activation(self, o: torch.Tensor) -> torch.Tensor:
        """a = φ(g_k (o − δ_k)) per layer, (B, N)."""
        z = self.act_gain * (o - self.act_offset)
        return torch.cat([_PHI[phi][0](self._layer(z, i))
                          for i, phi in enumerate(self.real.activations)], dim=-1)

    def forward_columns(self, x: torch.Tensor, r_pos: torch.Tensor, r_neg: torch.Tensor):
        """J_W per layer, (B, N): the forward crossbars and biases on the rows below."""
        out = []
        x = x.expand(r_pos.shape[:-1] + x.shape[-1:])
        for i in range(len(self.A_pos)):
            pos = x if i == 0 else self._layer(r_pos, i - 1)
            neg = -x if i == 0 else self._layer(r_neg, i - 1)
            out.append(neg @ self.A_pos[i].T + pos @ self.A_neg[i].T + self.bias[i])
        return torch.cat(out, dim=-1)

    def feedforward(self, x: torch.Tensor) -> dict:
        """The feed-forward equilibrium (u = 0), layer by layer in closed form (module
        docstring): ``state`` (the y of the dynamics) and the signals soma, basal, apical,
        rate (each (B, N)). Raises ConfigError when a rail clips it."""
        x = x.to(torch.float64)
        A0 = self.gain
        B = x.shape[0]
        o, p, n_pos, n_neg, J_W = (torch.zeros(B, self.N, dtype=torch.float64)
                                   for _ in range(5))
        for i in range(len(self.A_pos)):
            pos = x if i == 0 else self._layer(n_pos, i - 1)
            neg = -x if i == 0 else self._layer(n_neg, i - 1)
            J = neg @ self.A_pos[i].T + pos @ self.A_neg[i].T + self.bias[i]
            sl = slice(self.offsets[i], self.offsets[i + 1])
            g = self.noise_gain[sl]
            J_W[:, sl] = J
            o[:, sl] = (g * self.soma_offset[sl] - J) / (1.0 + g / A0)
            p[:, sl] = self.soma_offset[sl] - o[:, sl] / A0
            a = _PHI[self.real.activations[i]][0](self.act_gain[sl] *
                                                  (o[:, sl] - self.act_offset[sl]))
            n_pos[:, sl] = A0 * (self.offset_pos[sl] + a) / (1.0 + A0)
            n_neg[:, sl] = A0 * (self.offset_neg[sl] - a) / (1.0 + A0)
        self.check_rails({"soma": o, "row r": n_pos, "row -r": n_neg})
        n_L = self.sizes[-1]
        state = torch.cat([o, p, n_pos, n_neg, torch.zeros(B, n_L, dtype=torch.float64)], 1)
        return {"state": state, "soma": o, "basal": self.s_Wc * p - J_W,
                "apical": self.s_Qc * p, "rate": n_pos}

    def check_rails(self, signals: dict) -> None:
        rail_v = self.rail * self.real.v_scale
        for what, v in signals.items():
            over = (v.abs() > self.rail).any(dim=0)
            if bool(over.any()):
                where = []
                for i in range(len(self.sizes) - 1):
                    idx = torch.nonzero(self._layer(over, i)).reshape(-1).tolist()
                    if idx:
                        where.append(f"layer {i + 1} neuron{'s' if len(idx) > 1 else ''} "
                                     f"{', '.join(map(str, idx[:8]))}"
                                     f"{' ...' if len(idx) > 8 else ''}")
                raise ConfigError(f"the amplifier rails (±{rail_v:g} V) clip the feed-forward "
                                  f"state at the {what} output of {'; '.join(where)}: raise "
                                  f"[amplifier] rail or lower the scaling's v_scale.")

    def read_sigma_columns(self, x: torch.Tensor, r_pos: torch.Tensor, r_neg: torch.Tensor,
                           u: torch.Tensor) -> torch.Tensor:
        """σ_col per column (B, N), model units: sqrt(Σ_j (R_f σ_j)² r_j²) over the devices of
        the column, r_j the voltage of each device's row (module docstring)."""
        out = []
        x = x.expand(r_pos.shape[:-1] + x.shape[-1:])
        uu = (u * u) @ self.read_Q.T
        for i in range(len(self.read_pos)):
            pos = x if i == 0 else self._layer(r_pos, i - 1)
            neg = -x if i == 0 else self._layer(r_neg, i - 1)
            out.append((neg * neg) @ self.read_pos[i].T + (pos * pos) @ self.read_neg[i].T +
                       self.read_bias[i])
        return (torch.cat(out, dim=-1) + uu).sqrt()

    def read_noise_path(self, seeds, samples, t_end: float) -> "ReadNoisePath":
        """The unit samples ξ of the read-noise process over [0, t_end] τ_u for a batch whose
        row b is noise seed ``seeds[b]`` of sample ``samples[b]``."""
        if self.read_interval is None:
            raise ConfigError(f"hardware '{self.real.spec.name}' has no read-noise process (set "
                              f"[synapse] read_noise and read_interval).")
        return ReadNoisePath.draw(seeds, samples, self.N, self.read_interval, t_end)

    def dynamics(self, x: torch.Tensor, r_star: torch.Tensor | None,
                 noise: "ReadNoisePath | None" = None) -> "HardwareDynamics":
        return HardwareDynamics(self, x.to(torch.float64),
                                None if r_star is None else r_star.to(torch.float64), noise)


class ReadNoisePath:
    """Unit white samples ξ_k (K+1, B, N) on the grid t_k = k·dt (τ_u), linear in between,
    ξ_0 = 0: what ngspice's ``trnoise(1 dt 0 0)`` produces. Row b of the batch is drawn from the
    named stream ``read_noise`` at (seed, sample), never from the global generator, so a path
    depends on its seed and sample only."""

    def __init__(self, xi: torch.Tensor, dt: float):
        self.xi, self.dt = xi, float(dt)

    @classmethod
    def draw(cls, seeds, samples, n: int, dt: float, t_end: float) -> "ReadNoisePath":
        if len(seeds) != len(samples):
            raise ConfigError(f"one noise seed per sample is needed, got {len(seeds)} seeds for "
                              f"{len(samples)} samples.")
        K = math.ceil(t_end / dt * (1 - 1e-12)) + 1
        xi = torch.stack([torch.randn(K + 1, n, dtype=torch.float64,
                                      generator=generator("read_noise", s, k))
                          for s, k in zip(seeds, samples)], dim=1)
        xi[0] = 0.0               # the path starts at 0 (the phase starts at rest, as TRNOISE)
        return cls(xi, dt)

    def breakpoints(self, t_end: float) -> list:
        """Where ξ has its kinks: the grid times after 0, up to the first at or beyond t_end
        (no step, the last included, crosses one)."""
        out = []
        for k in range(1, self.xi.shape[0]):
            out.append(k * self.dt)
            if out[-1] >= t_end:
                break
        return out

    def __call__(self, t: float) -> torch.Tensor:
        """ξ(t), (B, N)."""
        k = min(max(int(math.floor(t / self.dt)), 0), self.xi.shape[0] - 2)
        w = t / self.dt - k
        return (1.0 - w) * self.xi[k] + w * self.xi[k + 1]


class HardwareDynamics:
    """``f(t, y)`` of the realised circuit (module docstring) for inputs ``x`` (B, n_0) and
    targets ``r_star`` (B, n_L); ``r_star=None`` keeps the controller off (feed-forward
    phase); ``noise`` the read-noise path of the batch (None: no read noise in time)."""

    def __init__(self, model: HardwareModel, x: torch.Tensor, r_star: torch.Tensor | None,
                 noise: ReadNoisePath | None = None):
        self.m, self.x, self.r_star, self.noise = model, x, r_star, noise
        self.nfe = 0

    def split(self, y: torch.Tensor):
        N = self.m.N
        return y[..., :N], y[..., N:2 * N], y[..., 2 * N:3 * N], y[..., 3 * N:4 * N], \
            y[..., 4 * N:]

    def signals(self, y: torch.Tensor) -> dict:
        """Every signal at state(s) ``y`` (B, ·): soma, basal, apical, rate (B, N) and the
        controller's error, u, u_int (B, n_L); also the internal terms the vector field uses."""
        m, p_ = self.m, self.m.p
        n_s, p, n_pos, n_neg, u_int = self.split(y)
        o, r_pos, r_neg = (t.clamp(-m.rail, m.rail) for t in (n_s, n_pos, n_neg))
        r_L = r_pos[..., m.offsets[-2]:]
        if self.r_star is None:
            e = torch.zeros_like(r_L)
        else:
            e = self.r_star - r_L
        u = u_int + p_.k_p * e
        J_W = m.forward_columns(self.x, r_pos, r_neg)
        J_Q = -(u @ m.A_Qc.T)
        return {"soma": o, "basal": m.s_Wc * p - J_W, "apical": m.s_Qc * p - J_Q,
                "rate": r_pos, "error": e, "u": u, "u_int": u_int, "J": J_W + J_Q, "p": p,
                "n_s": n_s, "r_neg": r_neg, "n_pos": n_pos, "n_neg": n_neg}

    def __call__(self, t, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        m, p_ = self.m, self.m.p
        s = self.signals(y)
        o, p, J = s["soma"], s["p"], s["J"]
        if self.noise is not None:          # the read-noise process, one term per column
            J = J + m.read_sigma_columns(self.x, s["rate"], s["r_neg"], s["u"]) * self.noise(t)
        dv_c = (m.noise_gain * p - J - o) / p_.tau_v
        dn_s = (m.gain * (m.soma_offset - p) - s["n_s"]) / m.tau_p
        dp = torch.where(s["n_s"].abs() <= m.rail, dn_s, torch.zeros_like(dn_s)) - dv_c
        a = m.activation(o)
        dn_pos = (m.gain * (m.offset_pos - (s["rate"] - a)) - s["n_pos"]) / m.tau_p
        dn_neg = (m.gain * (m.offset_neg - (s["r_neg"] + a)) - s["n_neg"]) / m.tau_p
        leak = s["u_int"] if p_.leak == "integral" else s["u"]
        du = (s["error"] - p_.alpha * leak) / p_.tau_u
        return torch.cat([dn_s, dp, dn_pos, dn_neg, du], dim=-1)

    def trajectory(self, t: torch.Tensor, states: torch.Tensor) -> Trajectory:
        """The :class:`Trajectory` of states (T, B, ·) on the grid ``t``."""
        s = self.signals(states)
        m = self.m

        def layers(a):
            return [m._layer(a, i) for i in range(len(m.sizes) - 1)]

        return Trajectory(t=t, soma=layers(s["soma"]), basal=layers(s["basal"]),
                          apical=layers(s["apical"]), rate=layers(s["rate"]), u=s["u"],
                          u_int=s["u_int"], error=s["error"])
