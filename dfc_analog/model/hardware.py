"""The emulation: eqs. (1), (2) and (4) as the realised circuit computes them.

The circuit is the one :mod:`dfc_analog.hardware.realise` describes;
:mod:`dfc_analog.circuit.crossbar` writes the same equations as a netlist. In model units (voltages / v_scale, time in τ_u), for
neuron k of layer i with R_f its soma feedback resistance:

    crossbar    J = R_f I_src / v_scale, the current the rows would drive into a grounded column:
                J = A⁺ r⁻ + A⁻ r⁺ + (A_b⁻ − A_b⁺) − (A_Q⁺ − A_Q⁻) u,  A = R_f G (dimensionless),
                where r⁺, r⁻ are the rows (x, −x for layer 1) and the bias rows sit at ±V_ref;
                with wire resistance G is the wires' transfer conductance T
                (:mod:`dfc_analog.hardware.wires`), everywhere, s and n_g included
    op-amp      one pole: τ_p dn/dt = A₀ (V_os − V₋) − n, output o = clamp(n, ±rail)
                (τ_p = A₀ / 2π·gbw; the netlist's G–R–C stage and clamped buffer)
    soma        C_f from o to the virtual ground V₋ = p, R_f ‖ C_f, τ_v = R_f C_f:
                τ_v d(o − p)/dt = n_g p − J − o,   n_g = 1 + R_f G_Σ (the noise gain)
                (with an ideal op-amp p = 0 and this is eq. 1: τ_v dv/dt = −v + v_B + v_A)
    compartments v_B = s_W p − J_W, v_A = s_Q p − J_Q (the column currents times −R_f, s = R_f ΣG)
    row wires   with row-wire resistance a tile is a mesh whose sense admittance S couples its
                columns (I = T V + S V₋): s_W = −diag(R_f) S_W and s_Q are matrices per layer,
                n_g p becomes N_g p with N_g = I + s_W + s_Q, and the closed forms and the
                Jacobian's soma stages below solve with N_g per layer (:meth:`HardwareModel.sense`)
    rate        a = φ(g_k (o − δ_k)) from the differential pair; two transimpedance stages give
                the rows r⁺ ≈ a and r⁻ ≈ −a: τ_p dn±/dt = A₀ (V_os± − (r± ∓ a)) − n±
    controller  eq. (4) on four op-amps per output (:class:`OpAmpController`): e = r* − r⁺_L
                from a difference amplifier, an inverting integrator (−u_int), an inverting
                proportional stage (−k_p e) and an inverting summer (u = u_int + k_p e), each
                with its own offset; the error stage loads the row r⁺_L with its input R

The state is y = [n_soma, p, n⁺, n⁻, c] (B, 4 Σ n_i + 5 n_L), c the controller's. The
feed-forward equilibrium (eq. 2 on this hardware) is solved in closed form: the controller at
rest (its offsets give u_rest, :meth:`OpAmpController.rest`), then layer by layer, J including
−A_Q u_rest:

    o = (n_g V_os − J) / (1 + n_g / A₀),   p = V_os − o / A₀,   n± = A₀ (V_os± ± a) / (1 + A₀);

its rails must not clip (:class:`~dfc_analog.errors.ConfigError` names the neurons). With the
``ideal`` spec none of this runs: the model keeps its own path, bit for bit.

Read noise as a process (``read_interval`` > 0, :mod:`dfc_analog.hardware.devices`): each
column's current gains Σ_j R_f σ_j h_j ξ_j(t) r_j over its devices j (rows r_j in model units,
the bias rows at ±1; h_j = 1 without wire resistance, else the share of device j's current
that reaches its column's sense end, :mod:`dfc_analog.hardware.wires`, the same σ_j h_j as the
netlist's), which has, at every t, the law of one term per column

    J_read = σ_col(t) ξ(t),   σ_col² = Σ_j (R_f σ_j h_j)² r_j(t)²,

ξ unit samples on the grid t_k = k t_s (t_s = read_interval / time_scale τ_u), linear in
between (:class:`ReadNoisePath`, drawn from the named stream ``read_noise`` per noise seed and
sample); the crossbar netlist writes the same term as one B-source per column. It enters the
soma (the current into its virtual ground), not the compartments v_B and v_A, which are read
off the noiseless column currents in both simulators. The Dormand–Prince solve puts the grid
times as breakpoints (no step crosses one): ξ is continuous but has a kink at every t_k, and
within a segment f is smooth, so the 5(4) error estimate and the rtol / atol rule of the
deterministic comparison keep their meaning; a fixed-step solve would need the step of the
fastest (op-amp) time constant everywhere. Without a process nothing of this runs.

The stiff solver. The op-amps' closed-loop poles (τ_p n_g / A₀, about 0.01 τ_u on ``pcm``) bound
an explicit step whatever the tolerance; :class:`HardwareJacobian` is the exact Jacobian of f
(every pole state, clamp, wire ladder and the controller's op-amps) with a structured solve of
(I − cA), so that the Rosenbrock-W method (``simulate_hardware_wake(..., method='rosenbrock')``)
takes steps set by accuracy. The read-noise forcing is outside it: with a process the emulation
takes dopri5.
"""
from __future__ import annotations

import math

import torch

from dfc_analog.config.seeds import generator
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.realise import Realisation
from dfc_analog.hardware.wires import wired_layers
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import _PHI, activation_slope
from dfc_analog.model.trajectory import Trajectory


class HardwareModel:
    """The realised circuit's equations (module docstring) for a :class:`Realisation`, under the
    controller ``params``, at ``time_scale`` seconds per τ_u, computed in ``dtype`` on
    ``device`` (the realisation's draws are float64 numbers; float64 is the validation's
    reference)."""

    def __init__(self, real: Realisation, params: ControllerParams, time_scale: float = 1e-6,
                 dtype: torch.dtype = torch.float64, device=None):
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
        wired = wired_layers(real)               # the wires' T in place of G (IR drop)
        self.mesh = any(w.S_W is not None for w in wired)
        for w in wired:
            l = w.layer
            R = l.R_f[:, None]
            self.A_pos.append(R * l.G_pos)
            self.A_neg.append(R * l.G_neg)
            self.bias.append(l.R_f * (l.Gb_neg - l.Gb_pos))
            self.A_Q.append(R * (l.GQ_pos - l.GQ_neg))
            if self.mesh:                        # the row wires couple the columns
                self.s_W.append(-R * w.S_W)
                self.s_Q.append(-R * w.S_Q)
                continue
            self.s_W.append(l.R_f * ((l.G_pos + l.G_neg).sum(1) + l.Gb_pos + l.Gb_neg))
            self.s_Q.append(l.R_f * (l.GQ_pos + l.GQ_neg).sum(1))

        def cat(name):
            return torch.cat([getattr(l, name) for l in real.layers]) / vs

        if self.mesh:                            # N_g per layer (n_i, n_i)
            self.noise_gain = [torch.eye(len(a), dtype=a.dtype) + a + b
                               for a, b in zip(self.s_W, self.s_Q)]
        else:
            self.noise_gain = 1.0 + torch.cat(self.s_W) + torch.cat(self.s_Q)
        self.soma_offset, self.offset_pos, self.offset_neg = (
            cat("soma_offset"), cat("rate_offset_pos"), cat("rate_offset_neg"))
        self.act_offset = cat("act_offset")
        self.act_gain = torch.cat([l.act_gain for l in real.layers])
        if not self.mesh:
            self.s_Wc, self.s_Qc = torch.cat(self.s_W), torch.cat(self.s_Q)
        self.A_Qc = torch.cat(self.A_Q)          # (N, n_L): all apical columns at once
        self.offsets = [0]
        for n in self.sizes[1:]:
            self.offsets.append(self.offsets[-1] + n)
        self.read_interval = None if real.read_interval is None else \
            real.read_interval / time_scale
        if self.read_interval is not None:       # (R_f σ h)² per device, per row kind
            self.read_pos, self.read_neg, self.read_bias, read_Q = [], [], [], []
            for l in (w.layer for w in wired):   # σ h: through the wires (module docstring)
                R2 = (l.R_f ** 2)[:, None]
                sp, sn, sbp, sbn, sqp, sqn = l.read_sigma
                self.read_pos.append(R2 * sp ** 2)       # on the rows −r (and −x)
                self.read_neg.append(R2 * sn ** 2)       # on the rows r (and x)
                self.read_bias.append(R2[:, 0] * (sbp ** 2 + sbn ** 2))   # rows ±V_ref
                read_Q.append(R2 * (sqp ** 2 + sqn ** 2))                  # rows ±u
            self.read_Q = torch.cat(read_Q)
        self.dtype, self.device = dtype, torch.device("cpu" if device is None else device)
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, name, self._here(value))
            elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                setattr(self, name, [self._here(t) for t in value])
        self.ctl = OpAmpController(self)

    def _here(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` in the model's dtype, on its device."""
        return t.to(dtype=self.dtype, device=self.device)

    @property
    def N(self) -> int:
        return self.offsets[-1]

    def _layer(self, t: torch.Tensor, i: int) -> torch.Tensor:
        return t[..., self.offsets[i]:self.offsets[i + 1]]

    def _per_layer(self, mats: list, p: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._layer(p, i) @ m.T for i, m in enumerate(mats)], dim=-1)

    def sense(self, p: torch.Tensor) -> tuple:
        """(s_W p, s_Q p), (…, N): what the virtual grounds p add to the compartments,
        −R_f times the currents S p they draw from the crossbars (module docstring)."""
        if not self.mesh:
            return self.s_Wc * p, self.s_Qc * p
        return self._per_layer(self.s_W, p), self._per_layer(self.s_Q, p)

    def noise_gain_on(self, p: torch.Tensor) -> torch.Tensor:
        """n_g p (…, N): the soma stages' noise gain on p; N_g p per layer on a mesh."""
        if not self.mesh:
            return self.noise_gain * p
        return self._per_layer(self.noise_gain, p)

    def activation(self, o: torch.Tensor, slope: bool = False) -> torch.Tensor:
        """a = φ(g_k (o − δ_k)) per layer, (B, N); ``slope``: da/do = g_k φ'(g_k (o − δ_k))."""
        z = self.act_gain * (o - self.act_offset)
        a = torch.cat([activation_slope(phi, self._layer(z, i)) if slope
                       else _PHI[phi][0](self._layer(z, i))
                       for i, phi in enumerate(self.real.activations)], dim=-1)
        return a * self.act_gain if slope else a

    def crossbar(self, i: int, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The column currents of layer i's forward crossbar (model units, no bias rows) for
        the rows r⁺ = ``pos`` and r⁻ = ``neg`` below: A⁺ r⁻ + A⁻ r⁺."""
        return neg @ self.A_pos[i].T + pos @ self.A_neg[i].T

    def forward_columns(self, x: torch.Tensor, r_pos: torch.Tensor, r_neg: torch.Tensor):
        """J_W per layer, (B, N): the forward crossbars and biases on the rows below."""
        out = []
        x = x.expand(r_pos.shape[:-1] + x.shape[-1:])
        for i in range(len(self.A_pos)):
            pos = x if i == 0 else self._layer(r_pos, i - 1)
            neg = -x if i == 0 else self._layer(r_neg, i - 1)
            out.append(self.crossbar(i, pos, neg) + self.bias[i])
        return torch.cat(out, dim=-1)

    def feedforward(self, x: torch.Tensor) -> dict:
        """The feed-forward equilibrium (u = 0), layer by layer in closed form (module
        docstring): ``state`` (the y of the dynamics) and the signals soma, basal, apical,
        rate (each (B, N)). Raises ConfigError when a rail clips it."""
        x = self._here(x)
        A0 = self.gain
        B = x.shape[0]
        o, p, n_pos, n_neg, J_W = (torch.zeros(B, self.N, dtype=self.dtype, device=self.device)
                                   for _ in range(5))
        ctl = self.ctl.rest(B)
        J_Q = -(ctl[:, -self.sizes[-1]:] @ self.A_Qc.T)        # the controller's u at rest
        for i in range(len(self.A_pos)):
            pos = x if i == 0 else self._layer(n_pos, i - 1)
            neg = -x if i == 0 else self._layer(n_neg, i - 1)
            J = neg @ self.A_pos[i].T + pos @ self.A_neg[i].T + self.bias[i]
            sl = slice(self.offsets[i], self.offsets[i + 1])
            J_W[:, sl] = J
            J = J + J_Q[:, sl]
            if self.mesh:                        # (I + N_g / A₀) o = N_g V_os − J
                g = self.noise_gain[i]
                eye = torch.eye(len(g), dtype=g.dtype, device=g.device)
                o[:, sl] = torch.linalg.solve(eye + g / A0,
                                              (g @ self.soma_offset[sl])[:, None] - J.T).T
            else:
                g = self.noise_gain[sl]
                o[:, sl] = (g * self.soma_offset[sl] - J) / (1.0 + g / A0)
            p[:, sl] = self.soma_offset[sl] - o[:, sl] / A0
            a = _PHI[self.real.activations[i]][0](self.act_gain[sl] *
                                                  (o[:, sl] - self.act_offset[sl]))
            n_pos[:, sl] = A0 * (self.offset_pos[sl] + a) / (1.0 + A0)
            n_neg[:, sl] = A0 * (self.offset_neg[sl] - a) / (1.0 + A0)
        self.check_rails({"soma": o, "row r": n_pos, "row -r": n_neg})
        self.ctl.error_rest(ctl, n_pos[:, self.offsets[-2]:])
        state = torch.cat([o, p, n_pos, n_neg, ctl], 1)
        s_W, s_Q = self.sense(p)
        return {"state": state, "soma": o, "basal": s_W - J_W, "apical": s_Q - J_Q,
                "rate": n_pos}

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
        """σ_col per column (B, N), model units: sqrt(Σ_j (R_f σ_j h_j)² r_j²) over the devices
        of the column, r_j the voltage of each device's row (module docstring)."""
        out = []
        x = x.expand(r_pos.shape[:-1] + x.shape[-1:])
        uu = (u * u) @ self.read_Q.T
        for i in range(len(self.read_pos)):
            pos = x if i == 0 else self._layer(r_pos, i - 1)
            neg = -x if i == 0 else self._layer(r_neg, i - 1)
            out.append((neg * neg) @ self.read_pos[i].T + (pos * pos) @ self.read_neg[i].T +
                       self.read_bias[i])
        return (torch.cat(out, dim=-1) + uu).sqrt()

    def read_noise_path(self, seeds, samples, t_end: float,
                        stream: str = "read_noise") -> "ReadNoisePath":
        """The unit samples ξ of the read-noise process over [0, t_end] τ_u for a batch whose
        row b is noise seed ``seeds[b]`` of sample ``samples[b]``, from the named seed
        ``stream`` (the emulation's ``read_noise``; the validation draws the circuit's own
        from ``circuit_read_noise``)."""
        if self.read_interval is None:
            raise ConfigError(f"hardware '{self.real.spec.name}' has no read-noise process (set "
                              f"[synapse] read_noise and read_interval).")
        return ReadNoisePath.draw(seeds, samples, self.N, self.read_interval, t_end, stream)

    def dynamics(self, x: torch.Tensor, r_star: torch.Tensor | None,
                 noise: "ReadNoisePath | None" = None) -> "HardwareDynamics":
        if noise is not None:
            noise = ReadNoisePath(self._here(noise.xi), noise.dt)
        return HardwareDynamics(self, self._here(x),
                                None if r_star is None else self._here(r_star), noise)


class ReadNoisePath:
    """Unit white samples ξ_k (K+1, B, N) on the grid t_k = k·dt (τ_u), linear in between,
    ξ_0 = 0: what ngspice's ``trnoise(1 dt 0 0)`` produces. Row b of the batch is drawn from the
    named stream ``read_noise`` (or another named stream) at (seed, sample), never from the
    global generator, so a path depends on its stream, seed and sample only."""

    def __init__(self, xi: torch.Tensor, dt: float):
        self.xi, self.dt = xi, float(dt)

    @classmethod
    def draw(cls, seeds, samples, n: int, dt: float, t_end: float,
             stream: str = "read_noise") -> "ReadNoisePath":
        if len(seeds) != len(samples):
            raise ConfigError(f"one noise seed per sample is needed, got {len(seeds)} seeds for "
                              f"{len(samples)} samples.")
        K = math.ceil(t_end / dt * (1 - 1e-12)) + 1
        xi = torch.stack([torch.randn(K + 1, n, dtype=torch.float64,
                                      generator=generator(stream, s, k))
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
        m = self.m
        n_s, p, n_pos, n_neg, c = self.split(y)
        o, r_pos, r_neg = (t.clamp(-m.rail, m.rail) for t in (n_s, n_pos, n_neg))
        ctl = m.ctl.signals(c, r_pos[..., m.offsets[-2]:], self.r_star)
        u = ctl["u"]
        J_W = m.forward_columns(self.x, r_pos, r_neg)
        J_Q = -(u @ m.A_Qc.T)
        s_W, s_Q = m.sense(p)
        return {"soma": o, "basal": s_W - J_W, "apical": s_Q - J_Q,
                "rate": r_pos, "error": ctl["error"], "u": u, "u_int": ctl["u_int"],
                "J": J_W + J_Q, "p": p, "n_s": n_s, "r_neg": r_neg, "n_pos": n_pos,
                "n_neg": n_neg, "controller": ctl}

    def __call__(self, t, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """dy/dt at time ``t`` (it enters through the read-noise path only), written into
        ``out`` when given."""
        self.nfe += 1
        m, p_ = self.m, self.m.p
        s = self.signals(y)
        o, p, J = s["soma"], s["p"], s["J"]
        if self.noise is not None:          # the read-noise process, one term per column
            J = J + m.read_sigma_columns(self.x, s["rate"], s["r_neg"], s["u"]) * self.noise(t)
        dv_c = (m.noise_gain_on(p) - J - o) / p_.tau_v
        dn_s = (m.gain * (m.soma_offset - p) - s["n_s"]) / m.tau_p
        dp = torch.where(s["n_s"].abs() <= m.rail, dn_s, torch.zeros_like(dn_s)) - dv_c
        a = m.activation(o)
        dn_pos = (m.gain * (m.offset_pos - (s["rate"] - a)) - s["n_pos"]) / m.tau_p
        dn_neg = (m.gain * (m.offset_neg - (s["r_neg"] + a)) - s["n_neg"]) / m.tau_p
        return torch.cat([dn_s, dp, dn_pos, dn_neg, m.ctl.rates(s["controller"])], dim=-1,
                         out=out)

    def stiff_part(self, y: torch.Tensor, c: float):
        """``solve`` with solve(b, scale, out) = (I − cA)⁻¹ (scale · b), A the Jacobian of
        this vector field at ``y`` (:class:`HardwareJacobian`): what the Rosenbrock-W solver
        (:func:`dfc_analog.solvers.rosenbrock.rosenbrock_w`) needs. The read-noise forcing is
        not part of it (the caller refuses the solver with a process)."""
        return HardwareJacobian(self, y).solver(c)

    def trajectory(self, t: torch.Tensor, states: torch.Tensor) -> Trajectory:
        """The :class:`Trajectory` of states (T, B, ·) on the grid ``t``."""
        s = self.signals(states)
        m = self.m

        def layers(a):
            return [m._layer(a, i) for i in range(len(m.sizes) - 1)]

        return Trajectory(t=t, soma=layers(s["soma"]), basal=layers(s["basal"]),
                          apical=layers(s["apical"]), rate=layers(s["rate"]), u=s["u"],
                          u_int=s["u_int"], error=s["error"])


class HardwareJacobian:
    """The Jacobian A = ∂f/∂y of :class:`HardwareDynamics` at a state y (B, ·), held in its
    structure rather than as a matrix. Per neuron (x = n_s, p, n⁺, n⁻; m_x = 1 inside the rails
    and 0 beyond, the slope of each clamp and of the capacitor's where(); a' = m_s da/do):

        ∂ṅ_s = −(A₀ ∂p + ∂n_s) / τ_p
        ∂ṗ   = m_s ∂ṅ_s − (n_g ∂p − ∂J − m_s ∂n_s) / τ_v     (N_g ∂p on a mesh)
        ∂ṅ±  = (±A₀ a' ∂n_s − A₀ m_± ∂n± − ∂n±) / τ_p

    where ∂J = A⁺ m_− ∂n⁻ + A⁻ m_+ ∂n⁺ over the rows of the layer below (the crossbar; none for
    layer 1, whose rows carry the constant input) − A_Q m_S ∂n_S (the controller's u), and the
    controller's five stages per output (:class:`OpAmpController`) linearised the same way, fed
    by the output rows m_+ ∂n⁺_L. :meth:`apply` is A w.

    :meth:`solver` gives (I − cA)⁻¹ for the Rosenbrock-W method. Without the controller the
    network part M_nn is lower block-triangular: forward substitution through the layers, a
    2 × 2 solve per soma stage (n_s, p) and then its two row stages (on a mesh, where N_g
    couples a layer's p, n_s is eliminated and p solved from one LU-factored n_i × n_i system per
    layer and sample). The controller closes the
    loop through u (into every p) and r⁺_L (into its error stage): its 5 n_L unknowns are
    solved first from their Schur complement S = M_cc − M_cn M_nn⁻¹ M_nc (dense 5 n_L × 5 n_L
    per sample, LU-factored; M_nc is nonzero on the n_L columns of u alone, whose M_nn⁻¹ M_nc
    come from n_L forward substitutions at once and are kept), then the network's unknowns as
    M_nn⁻¹ b_n − (M_nn⁻¹ M_nc) w_c. A solve costs about one evaluation of f."""

    def __init__(self, dyn: HardwareDynamics, y: torch.Tensor):
        m = self.m = dyn.m
        self.dyn, self.on = dyn, dyn.r_star is not None
        n_s, _, n_pos, n_neg, c = dyn.split(y)

        def inside(t):
            return (t.abs() <= m.rail).to(y.dtype)

        self.m_s, self.m_pos, self.m_neg = inside(n_s), inside(n_pos), inside(n_neg)
        self.slope = m.activation(n_s.clamp(-m.rail, m.rail), slope=True) * self.m_s
        n_E, n_I, _, n_P, n_S = m.ctl.split(c)
        self.m_E, self.m_I, self.m_P, self.m_S = (inside(t) for t in (n_E, n_I, n_P, n_S))

    def parts(self, w_n: torch.Tensor | None, w_c: torch.Tensor | None):
        """(A w)'s network rows (…, 4N) and controller rows (…, 5 n_L) for w = [w_n, w_c]
        (leading axes broadcast against the batch); None stands for a zero part."""
        m, N, n_L = self.m, self.m.N, self.m.ctl.n
        lead = (w_n if w_n is not None else w_c).shape[:-1]
        zeros = torch.zeros(lead + (N,), dtype=m.dtype, device=m.device)
        if w_n is None:
            w_s = w_p = w_pos = w_neg = zeros
        else:
            w_s, w_p, w_pos, w_neg = (w_n[..., k * N:(k + 1) * N] for k in range(4))
        r_pos, r_neg = self.m_pos * w_pos, self.m_neg * w_neg
        J = torch.cat([zeros[..., :m.sizes[1]]] +
                      [m.crossbar(i, m._layer(r_pos, i - 1), m._layer(r_neg, i - 1))
                       for i in range(1, len(m.sizes) - 1)], dim=-1)
        if w_c is None:
            w_c = torch.zeros(lead + (5 * n_L,), dtype=m.dtype, device=m.device)
        d_ctl, du = self._controller(w_c, r_pos[..., m.offsets[-2]:])
        J = J - du @ m.A_Qc.T
        dn_s = -(m.gain * w_p + w_s) / m.tau_p
        dp = self.m_s * dn_s - (m.noise_gain_on(w_p) - J - self.m_s * w_s) / m.p.tau_v
        dn_pos = (m.gain * (self.slope * w_s - r_pos) - w_pos) / m.tau_p
        dn_neg = (-m.gain * (self.slope * w_s + r_neg) - w_neg) / m.tau_p
        return torch.cat([dn_s, dp, dn_pos, dn_neg], dim=-1), d_ctl

    def _controller(self, w_c: torch.Tensor, dr_L: torch.Tensor):
        """The controller's rows of A w (:meth:`OpAmpController.rates` linearised) and the
        change of u, for its state change ``w_c`` and output-row change ``dr_L``."""
        ctl, A0, tau_p = self.m.ctl, self.m.gain, self.m.tau_p
        w_E, w_I, w_pI, w_P, w_S = ctl.split(w_c)
        o_E, o_I, o_P, u = self.m_E * w_E, self.m_I * w_I, self.m_P * w_P, self.m_S * w_S
        e = o_E if self.on else torch.zeros_like(o_E)
        dn_E = -(A0 * (dr_L + o_E) / 2 + w_E) / tau_p
        dn_I = -(A0 * w_pI + w_I) / tau_p
        dn_P = -(A0 * (ctl.k_p * e + o_P) / (1 + ctl.k_p) + w_P) / tau_p if ctl.k_p > 0 else \
            torch.zeros_like(dn_I)
        dn_S = -(A0 * (o_I + o_P + u) / 3 + w_S) / tau_p
        leak = ctl.alpha + (0.0 if self.on else ctl.RESET)
        dcap = -((e - w_pI) + leak * (o_I - w_pI) + ctl.alpha_t * (o_P - w_pI)) / ctl.tau_u
        return torch.cat([dn_E, dn_I, self.m_I * dn_I - dcap, dn_P, dn_S], dim=-1), u

    def apply(self, w: torch.Tensor) -> torch.Tensor:
        """A w for w of the state's shape (leading axes before the batch allowed)."""
        n = 4 * self.m.N
        return torch.cat(self.parts(w[..., :n], w[..., n:]), dim=-1)

    def solver(self, c: float):
        """``solve`` with solve(b, scale, out) = (I − cA)⁻¹ (scale · b) (class docstring)."""
        m, N = self.m, self.m.N
        tau_p, tau_v, A0 = m.tau_p, m.p.tau_v, m.gain
        k00, k01 = 1.0 + c / tau_p, c * A0 / tau_p            # the soma stage's 2 × 2 block
        k10 = -c * self.m_s * (1.0 / tau_v - 1.0 / tau_p)
        if m.mesh:                  # N_g couples a layer's p: its k11 is a matrix
            k11 = 1.0 + c * self.m_s * A0 / tau_p
            det = torch.ones_like(k11)
        else:
            k11 = 1.0 + c * (self.m_s * A0 / tau_p + m.noise_gain / tau_v)
            det = k00 * k11 - k01 * k10
        to_rows = c * A0 / tau_p * self.slope
        d_pos = 1.0 + c * (A0 * self.m_pos + 1.0) / tau_p
        d_neg = 1.0 + c * (A0 * self.m_neg + 1.0) / tau_p

        layers = []                 # per layer: its slice and coefficients, sliced once
        for i in range(len(m.sizes) - 1):
            sl = slice(m.offsets[i], m.offsets[i + 1])
            soma = None
            if m.mesh:              # (diag(k11 − k10 k01 / k00) + c N_g / τ_v) w_p = …
                soma = torch.linalg.lu_factor(
                    torch.diag_embed(k11[..., sl] - k10[..., sl] * k01 / k00) +
                    (c / tau_v) * m.noise_gain[i])
            layers.append((sl, slice(m.offsets[i - 1], m.offsets[i]) if i else None,
                           k10[..., sl], k11[..., sl], det[..., sl], to_rows[..., sl],
                           d_pos[..., sl], d_neg[..., sl], soma))

        def network(b):
            """M_nn⁻¹ b by forward substitution through the layers."""
            out = torch.empty_like(b)
            b_s, b_p, b_pos, b_neg = (b[..., k * N:(k + 1) * N] for k in range(4))
            w_s, w_p, w_pos, w_neg = (out[..., k * N:(k + 1) * N] for k in range(4))
            for i, (sl, below, k10_, k11_, det_, rows_, dp_, dn_, soma) in enumerate(layers):
                rhs, bs = b_p[..., sl], b_s[..., sl]
                if below is not None:
                    rhs = rhs + (c / tau_v) * m.crossbar(i, self.m_pos[..., below] *
                                                         w_pos[..., below],
                                                         self.m_neg[..., below] *
                                                         w_neg[..., below])
                if soma is None:
                    ws = torch.div(k11_ * bs - k01 * rhs, det_, out=w_s[..., sl])
                    torch.div(k00 * rhs - k10_ * bs, det_, out=w_p[..., sl])
                else:
                    wp = torch.linalg.lu_solve(*soma, (rhs - k10_ * bs / k00)[..., None])
                    w_p[..., sl] = wp[..., 0]
                    ws = torch.div(bs - k01 * w_p[..., sl], k00, out=w_s[..., sl])
                torch.div(torch.addcmul(b_pos[..., sl], rows_, ws), dp_, out=w_pos[..., sl])
                torch.div(torch.addcmul(b_neg[..., sl], rows_, ws, value=-1.0), dn_,
                          out=w_neg[..., sl])
            return out

        def M_cn(w_n):
            return self.parts(w_n, None)[1].mul_(-c)

        # The controller acts on the network through u alone (its last n_L states): the
        # columns M_nn⁻¹ M_nc of those, H (n_L, B, 4N), are all the Schur complement needs.
        n_L, n_c = m.ctl.n, 5 * m.ctl.n
        basis = torch.eye(n_c, dtype=m.dtype, device=m.device)[:, None, :].expand(
            n_c, self.m_s.shape[0], n_c)
        H = network(self.parts(None, basis[-n_L:])[0].mul_(-c))
        columns = basis - c * self.parts(None, basis)[1]
        columns[-n_L:] -= M_cn(H)
        schur = torch.linalg.lu_factor(columns.permute(1, 2, 0))

        def solve(b, scale: float = 1.0, out: torch.Tensor | None = None):
            """x = (I − cA)⁻¹ (scale · b), written into ``out`` when given."""
            b_n, b_c = b[..., :4 * N], b[..., 4 * N:]
            t = network(b_n)
            w_c = torch.linalg.lu_solve(*schur, (b_c - M_cn(t))[..., None])[..., 0]
            w_n = t - torch.einsum("jbn,bj->bn", H, w_c[..., -n_L:])
            return torch.cat([w_n, w_c], dim=-1, out=out).mul_(scale)

        return solve


class OpAmpController:
    """Eq. (4) on the controller's four op-amps per output m (the netlist's
    ``dfc_controller_hw``), all R = R_in (the realisation's R_r) unless stated, V in model units:

    error E        difference amplifier: r*_g = enable·r* (the target switched on with the
                   controller) through R to V₊ and R to ground, r_L through R to V₋ and R from
                   V₋ to the output o_E:  V₊ = r*_g / 2,  V₋ = (r_L + o_E) / 2  (o_E → r* − r_L)
    switch         e = enable·o_E into the stages below (the node ``error``); while the
                   controller is off, a reset switch G_r = ρ / R_in (ρ = 100) shorts C_u
    integrator I   inverting: R_in from e to V₋ = p, C_u from p to o_I, the leak R_in / α from
                   o_I to p (and for ``leak = 'total'`` R_in / α from o_P as well); KCL at p,
                   τ_u = R_in C_u:
                       τ_u d(o_I − p)/dt = −[(e − p) + (α + ρ (1 − enable)) (o_I − p)
                                            + α_t (o_P − p)],   α_t = α for 'total', else 0
                   (o_I → −u_int: τ_u du_int/dt = e − α u_int, or e − α u with α_t)
    proportional P inverting: R from e, k_p R to o_P: V₋ = (k_p e + o_P) / (1 + k_p) (o_P → −k_p e)
    summer S       inverting: R from o_I, R from o_P, R from V₋ to o_S = u:
                       V₋ = (o_I + o_P + u) / 3  (u → u_int + k_p e)

Each op-amp: τ_p dn/dt = A₀ (V₊ + V_os − V₋) − n, o = clamp(n, ±rail), as the soma's; the
integrator's V₋ = p is a state (the capacitor), like the soma's. With A₀ finite the integrator
leaks by about (1 + α)/A₀ more. The state per output is c = [n_E, n_I, p, n_P, n_S] (B, 5 n_L);
with k_p = 0 there is no proportional stage (o_P = 0). Before the switch-on the controller rests
with the reset closed: its offsets give a small u_rest, which feeds the network through Q
(:meth:`rest`)."""

    RESET = 100.0

    def __init__(self, model: "HardwareModel"):
        m = model
        self.m, self.n = m, m.sizes[-1]
        p = m.p
        self.k_p, self.alpha, self.tau_u = p.k_p, p.alpha, p.tau_u
        self.alpha_t = p.alpha if p.leak == "total" else 0.0
        off = m.real.controller_offset
        off = torch.zeros(4, self.n, dtype=torch.float64) if off is None else off
        self.os_E, self.os_I, self.os_P, self.os_S = m._here(off / m.real.v_scale)
        if self.k_p == 0:
            self.os_P = torch.zeros_like(self.os_P)

    def split(self, c: torch.Tensor):
        n = self.n
        return tuple(c[..., a * n:(a + 1) * n] for a in range(5))

    def signals(self, c: torch.Tensor, r_L: torch.Tensor, r_star: torch.Tensor | None) -> dict:
        """The controller's node voltages at state ``c`` with the output rates ``r_L``
        (``r_star=None``: the controller off, the reset closed)."""
        rail = self.m.rail
        n_E, n_I, p_I, n_P, n_S = self.split(c)
        o_E, o_I, o_P, u = (t.clamp(-rail, rail) for t in (n_E, n_I, n_P, n_S))
        on = r_star is not None
        e = o_E if on else torch.zeros_like(o_E)
        return {"n_E": n_E, "n_I": n_I, "p_I": p_I, "n_P": n_P, "n_S": n_S, "o_I": o_I,
                "o_P": o_P, "u": u, "error": e, "u_int": -o_I, "on": on,
                "vp_E": (r_star / 2 if on else torch.zeros_like(r_L)),
                "vm_E": (r_L + o_E) / 2, "vm_P": (self.k_p * e + o_P) / (1 + self.k_p),
                "vm_S": (o_I + o_P + u) / 3}

    def rates(self, s: dict) -> torch.Tensor:
        """dc/dt (module and class docstrings)."""
        A0, tau_p, rail = self.m.gain, self.m.tau_p, self.m.rail
        e, p, o_I, o_P = s["error"], s["p_I"], s["o_I"], s["o_P"]
        dn_E = (A0 * (s["vp_E"] + self.os_E - s["vm_E"]) - s["n_E"]) / tau_p
        dn_I = (A0 * (self.os_I - p) - s["n_I"]) / tau_p
        dn_P = (A0 * (self.os_P - s["vm_P"]) - s["n_P"]) / tau_p if self.k_p > 0 else \
            torch.zeros_like(dn_I)
        dn_S = (A0 * (self.os_S - s["vm_S"]) - s["n_S"]) / tau_p
        leak = self.alpha + (0.0 if s["on"] else self.RESET)
        dcap = -((e - p) + leak * (o_I - p) + self.alpha_t * (o_P - p)) / self.tau_u
        dp = torch.where(s["n_I"].abs() <= rail, dn_I, torch.zeros_like(dn_I)) - dcap
        return torch.cat([dn_E, dn_I, dp, dn_P, dn_S], dim=-1)

    def rest(self, B: int) -> torch.Tensor:
        """The state (B, 5 n_L) at rest before the switch-on, all but the error stage (which
        sees r_L: :meth:`error_rest`): :func:`rest_control` of this controller's offsets."""
        offsets = torch.stack([self.os_E, self.os_I, self.os_P, self.os_S])
        return rest_control(offsets, self.m.gain, self.m.p).expand(B, 5 * self.n).clone()

    def error_rest(self, c: torch.Tensor, r_L: torch.Tensor) -> None:
        """Put the error stage of ``c`` at rest with the target off: n_E = A₀ (V_os − (r_L +
        n_E) / 2)."""
        A0 = self.m.gain
        c[..., :self.n] = A0 * (self.os_E - r_L / 2) / (1 + A0 / 2)


def rest_control(offsets: torch.Tensor, gain: float, params: ControllerParams) -> torch.Tensor:
    """The op-amp controller's state [n_E = 0, n_I, p, n_P, u] (…, 5 n_L) at rest (e = 0, the
    reset closed) for input offsets ``offsets`` (…, 4, n_L) of its error, integrator,
    proportional and summing stages in model units (:class:`OpAmpController`): each op-amp at
    n = A₀ (V₊ + V_os − V₋) with its feedback network solved in closed form. Batched over
    leading dimensions (chips), so deployment folds u_rest the way the emulation has it."""
    A0, k_p = gain, params.k_p
    alpha_t = params.alpha if params.leak == "total" else 0.0
    os_I, os_P, os_S = offsets[..., 1, :], offsets[..., 2, :], offsets[..., 3, :]
    if k_p == 0:
        os_P = torch.zeros_like(os_P)
    o_P = A0 * os_P / (1 + A0 / (1 + k_p))
    a_I = params.alpha + OpAmpController.RESET
    # −p + a_I (o_I − p) + α_t (o_P − p) = 0 and o_I = A₀ (V_os − p)
    p = (a_I * A0 * os_I + alpha_t * o_P) / (1 + a_I + alpha_t + a_I * A0)
    o_I = A0 * (os_I - p)
    u = A0 * (os_S - (o_I + o_P) / 3) / (1 + A0 / 3)
    return torch.cat([torch.zeros_like(o_I), o_I, p, o_P, u], dim=-1)
