"""Energy and latency of the realised circuit, per inference and per learning phase, from the
circuit (ngspice) and from the model (the emulation of the same realisation).

Power, in W, of the circuit of :mod:`dfc_analog.hardware.realise` at node voltages (V):

    crossbar     Σ G (V_row − V₋)² over every device of W_i, the bias rows and Q_i: the
                 dissipation in the conductances (what ngspice's @R[p] gives per resistor);
                 with wire resistance Σ G (V_row − u)² + Σ (Δu)² / R_w over the devices and
                 the wire segments of each column's ladder (:func:`column_flows`); on a mesh
                 (row-wire resistance) the power the tile's ports deliver, V·i_d − V₋·I,
                 from its port admittances (:func:`~dfc_analog.hardware.wires.mesh_ports`,
                 solved once per realisation: :func:`~dfc_analog.hardware.wires.driver_ports`)
    drivers      Σ V_row I_row of the ideal row sources: the input rows ±x v_scale (a DAC), the
                 bias references ±V_ref and the controller's inverted rows −u
    amplifiers   every op-amp of the network draws I_q (V_dd − V_ss) and its output current
                 I_out from V_dd (I_out > 0) or V_ss (I_out < 0): a class-B output stage; the
                 output rows r⁺_L also drive the controller's error stage
    controller   its op-amps (error, integrator, proportional, summer per output), the same
                 class-B stages on their own supplies V_ddc, V_ssc; the summer's output drives
                 the rows u of every Q_i

The circuit's energy is the supply energy ngspice integrates (the amplifiers through V_dd and
V_ss, the controller through V_ddc and V_ssc) plus the drivers', with the crossbar's dissipation
read from the simulated node voltages. The model's estimate evaluates the same terms on the
emulation's trajectory, the op-amps' output currents from its equations (soma: (v_B + v_A)
v_scale / R_f; row stages: their feedback current a v_scale / R_r plus the rows they drive; the
controller's stages: :func:`controller_currents`). Latency is the settling time:
the last time an output rate is further than ``band`` (1 %) of its total change from its final
value after the input steps on at t = 0.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from dfc_analog.circuit.graph import controller_name, neuron_name
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.hardware.realise import Realisation
from dfc_analog.hardware.wires import column_cells, driver_ports, ladder_nodes, tiles
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel


@dataclass
class EnergyReport:
    """Energy (J) of one phase of duration ``t_end`` (s) and its breakdown; ``macs`` the
    multiply-accumulates the crossbars perform in it (one per forward weight)."""

    source: str               # 'circuit' or 'model'
    t_end: float
    total: float
    crossbar: float
    amplifiers: float         # from the supplies: quiescent + output stages
    quiescent: float
    drivers: float
    controller: float         # the controller's op-amps, quiescent included
    settling_time: float | None
    macs: int
    seconds: float = 0.0      # wall-clock time of the simulation
    to_settle: float | None = None   # energy (J) from the step until the output settled

    @property
    def per_inference(self) -> float:
        """Energy of one inference: until the output settled (the whole window if it did
        not)."""
        return self.total if self.to_settle is None else self.to_settle

    @property
    def per_mac(self) -> float:
        return self.per_inference / self.macs

    def line(self) -> str:
        settle = "not within the window" if self.settling_time is None else \
            f"{self.settling_time * 1e6:.3g} µs"
        return (f"{self.source}: {self.per_inference:.4g} J per inference = "
                f"{self.per_mac * 1e15:.4g} fJ/MAC, settling (1 %) {settle}; over the "
                f"{self.t_end * 1e6:.3g} µs window {self.total:.4g} J (crossbar "
                f"{self.crossbar:.3g} J, amplifiers {self.amplifiers:.3g} J of which quiescent "
                f"{self.quiescent:.3g} J, drivers {self.drivers:.3g} J, controller "
                f"{self.controller:.3g} J)")


def forward_macs(real: Realisation) -> int:
    """Multiply-accumulates of one pass through the forward crossbars: Σ n_i n_{i−1}."""
    sizes = real.layer_sizes
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def crossbar_power(real: Realisation, x, p: list, r_pos: list, r_neg: list, u):
    """(crossbar dissipation, driver power), each (T,) W, at voltages (V; arrays (T, n)): the
    input ``x`` (n_0,) in model units, per layer the virtual grounds ``p`` and the rows r⁺, r⁻,
    and the control signal ``u`` (T, n_L)."""
    if _wired(real):
        return _flow_power(column_flows(real, x, p, r_pos, r_neg, u))
    x = np.asarray(x, dtype=np.float64) * real.v_scale
    T = np.asarray(u).shape[0]
    xbar, drive = np.zeros(T), np.zeros(T)
    for i in range(len(real.layers)):
        pos = np.broadcast_to(x, (T, x.size)) if i == 0 else np.asarray(r_pos[i - 1])
        neg = np.broadcast_to(-x, (T, x.size)) if i == 0 else np.asarray(r_neg[i - 1])
        a, b = layer_crossbar_power(real, i, np.asarray(p[i]), pos, neg, u)
        xbar, drive = xbar + a, drive + b
    return xbar, drive


def layer_crossbar_power(real: Realisation, i: int, vm, pos, neg, u) -> tuple:
    """(crossbar dissipation, driver power), each (T,) W, of layer ``i``'s crossbars W_{i+1}
    and Q_{i+1} (``i`` from 0; without wire resistance) at its virtual grounds ``vm`` (T, n) V,
    its input rows ``pos``, ``neg`` (T, n_in) V and the control signal ``u`` (T, n_L) in model
    units; the input rows of the first layer count as drivers."""
    vs, lr = real.v_scale, real.layers[i]
    T = vm.shape[0]
    xbar, drive = np.zeros(T), np.zeros(T)
    # Σ_kj G_kj (V_j − V_k)² = Σ_j V_j² Σ_k G_kj − 2 Σ_k V_k Σ_j G_kj V_j + Σ_k V_k² Σ_j G_kj
    for G, rows in ((lr.G_pos.numpy(), neg), (lr.G_neg.numpy(), pos)):
        xbar += (rows ** 2) @ G.sum(0) - 2 * np.einsum("tk,tk->t", vm, rows @ G.T) + \
            (vm ** 2) @ G.sum(1)
        if i == 0:          # the input rows are ideal drivers: V_j Σ_k G_kj (V_j − V_k)
            drive += (rows ** 2) @ G.sum(0) - np.einsum("tk,tk->t", vm, rows @ G.T)
    uu = np.asarray(u) * vs
    for G, rows, driver in ((lr.Gb_pos.numpy()[:, None], np.full((T, 1), -vs), True),
                            (lr.Gb_neg.numpy()[:, None], np.full((T, 1), vs), True),
                            (lr.GQ_pos.numpy(), -uu, True), (lr.GQ_neg.numpy(), uu, False)):
        flow = rows @ G.T                                           # (T, n_i): Σ_j G V_j
        xbar += (rows ** 2) @ G.sum(0) - 2 * np.einsum("tk,tk->t", vm, flow) + \
            (vm ** 2) @ G.sum(1)
        if driver:          # the rows u are the controller's summer output
            drive += (rows ** 2) @ G.sum(0) - np.einsum("tk,tk->t", vm, flow)
    return xbar, drive


def solve_meshes(real: Realisation) -> None:
    """On a mesh, solve every tile once with its drivers' admittance (the energy's port
    equations, :func:`~dfc_analog.hardware.wires.driver_ports`), which the emulation and the
    netlist then reuse (without a read-noise process) instead of solving the mesh again."""
    if real.spec.synapse.row_wire_resistance > 0:
        for lr in real.layers:
            driver_ports(lr, real.spec)


def _wired(real: Realisation) -> bool:
    """True when the crossbars have wire resistance (column or row wires)."""
    return real.spec.synapse.wire_resistance > 0 or real.spec.synapse.row_wire_resistance > 0


def column_flows(real: Realisation, x, p: list, r_pos: list, r_neg: list, u,
                 chunk: int = 1 << 22) -> list:
    """The crossbars with wire resistance (:mod:`dfc_analog.hardware.wires`), at the voltages of
    :func:`crossbar_power`: :func:`layer_flows` of every layer."""
    x = np.asarray(x, dtype=np.float64) * real.v_scale
    T = np.asarray(u).shape[0]
    out = []
    for i in range(len(real.layers)):
        pos = np.broadcast_to(x, (T, x.size)) if i == 0 else np.asarray(r_pos[i - 1])
        neg = -pos if i == 0 else np.asarray(r_neg[i - 1])
        out.append(layer_flows(real, i, p[i], pos, neg, u, chunk))
    return out


def layer_flows(real: Realisation, i: int, vm, pos, neg, u, chunk: int = 1 << 22) -> dict:
    """Layer ``i``'s crossbars (``i`` from 0) with wire resistance at its virtual grounds ``vm``
    (T, n) V, its input rows ``pos``, ``neg`` (T, n_in) V and the control signal ``u`` (T, n_L)
    in model units: ``xbar`` (T,), the dissipation in the devices and the wire segments, and
    per cell in wire order the row voltages ``V_W``, ``V_Q`` (T, cells) and the currents
    ``I_W``, ``I_Q`` (T, cells) the rows drive into the cells, summed over the columns. Each
    tile column's ladder is solved for its node voltages, ``chunk`` node values at a time; a
    mesh tile (row-wire resistance) from its port admittances: the drivers deliver
    i_d = Y V − Tᵀ V₋ and the tile dissipates V·i_d − V₋·(T V + S V₋)."""
    vs, R_w = real.v_scale, real.spec.synapse.wire_resistance
    R_row, lr = real.spec.synapse.row_wire_resistance, real.layers[i]
    uu = np.asarray(u, dtype=np.float64) * vs
    T = uu.shape[0]
    vm = torch.as_tensor(np.asarray(vm, dtype=np.float64))                    # (T, n_i)
    ref = np.broadcast_to(np.array([-vs, vs]), (T, 2))
    V_W = np.concatenate([np.stack([neg, pos], -1).reshape(T, -1), ref], 1)
    V_Q = np.stack([-uu, uu], -1).reshape(T, -1)
    flows = {"xbar": np.zeros(T), "V_W": V_W, "V_Q": V_Q}
    mesh = driver_ports(lr, real.spec) if R_row > 0 else (None, None)
    for name, cells, V, ports in zip(("I_W", "I_Q"), column_cells(lr), (V_W, V_Q), mesh):
        current = np.zeros_like(V)
        if ports is not None:
            for _, s, cols, tile in ports:
                T_t, S_t, Y_t = tile.T.numpy(), tile.S.numpy(), tile.Y.numpy()
                Vd, Vm = V[:, s], vm[:, cols].numpy()
                i_d = Vd @ Y_t.T - Vm @ T_t
                flows["xbar"] += np.einsum("tc,tc->t", Vd, i_d) - np.einsum(
                    "tk,tk->t", Vm, Vd @ T_t.T + Vm @ S_t.T)
                current[:, s] += i_d
            flows[name] = current
            continue
        V = torch.as_tensor(V)
        for s in tiles(cells.shape[1], real.spec.crossbar_size):
            g = cells[:, s]
            step = max(1, chunk // g.numel())
            for t in range(0, T, step):
                Vc, end = V[t:t + step, None, s], vm[t:t + step]
                nodes = ladder_nodes(g, Vc, end, R_w)                      # (t, n_i, cells)
                flow = g * (Vc - nodes)
                wire = torch.diff(torch.cat([nodes, end[..., None]], -1), dim=-1)
                flows["xbar"][t:t + step] += ((flow * (Vc - nodes)).sum((1, 2)) +
                                              (wire ** 2).sum((1, 2)) / R_w).numpy()
                current[t:t + step, s] = flow.sum(1).numpy()
        flows[name] = current
    return flows


def _flow_power(flows: list) -> tuple:
    """(crossbar dissipation, driver power) of :func:`column_flows`: the sums of
    :func:`_layer_flow_power`."""
    xbar, drive = 0.0, 0.0
    for i, f in enumerate(flows):
        a, b = _layer_flow_power(f, i == 0)
        xbar, drive = xbar + a, drive + b
    return xbar, drive


def _layer_flow_power(f: dict, first: bool) -> tuple:
    """(crossbar dissipation, driver power) of one layer's :func:`layer_flows`: the drivers are
    the input rows of the ``first`` layer, the bias references (the last two cells of a W
    column) and the −u rows (the even cells of a Q column)."""
    driven = f["V_W"] * f["I_W"]
    return f["xbar"], (driven if first else driven[:, -2:]).sum(1) + \
        (f["V_Q"] * f["I_Q"])[:, 0::2].sum(1)


def settling_time(t: np.ndarray, out: np.ndarray, band: float = 0.01) -> float | None:
    """The last time (units of ``t``) any column of ``out`` (T, n) is further than ``band`` of
    its largest change from its final value; None when that is in the last fifth of the window
    (the window does not show the output at rest)."""
    change = np.abs(out - out[:1]).max()
    if change == 0:
        return 0.0
    outside = (np.abs(out - out[-1:]) > band * change).any(axis=1)
    idx = np.nonzero(outside)[0]
    if idx.size == 0:
        return float(t[0])
    if idx[-1] == len(t) - 1 or t[idx[-1] + 1] > t[0] + 0.8 * (t[-1] - t[0]):
        return None
    return float(t[idx[-1] + 1])


def _integrate(t: np.ndarray, power: np.ndarray, until: float | None = None) -> float:
    """∫ power dt by the trapezoidal rule over the simulator's own points (up to ``until``,
    interpolated there)."""
    if until is not None:
        keep = t < until
        t = np.append(t[keep], until)
        power = np.append(power[keep], np.interp(until, t[:-1], power[keep]) if keep.sum() > 1
                          else power[0])
    dt = np.diff(t)
    return float(np.sum(0.5 * dt * (power[1:] + power[:-1])))


def circuit_energy(real: Realisation, params: ControllerParams, x, r_star, t_end: float,
                   times, time_scale: float = 1e-6, options: SpiceOptions | None = None,
                   settle: float = 1.0) -> tuple:
    """(EnergyReport, node vectors) of one phase of the crossbar netlist over [0, t_end] τ_u,
    measured in ngspice: ``r_star=None`` an inference (the input steps on at t = 0, controller
    off), else the wake phase of learning (from the feed-forward state, controller on at t = 0
    with target ``r_star``); the settling time is the outputs'."""
    from dfc_analog.circuit.crossbar import saved_vectors, write_crossbar_netlist
    from dfc_analog.circuit.simulate import run_netlist
    options = options or SpiceOptions()
    start = time.perf_counter()
    solve_meshes(real)
    phase = "inference" if r_star is None else "wake"
    text = write_crossbar_netlist(real, params, x, r_star, phase, t_end, times, settle,
                                  options, time_scale)
    data = run_netlist(text, saved_vectors(real), options.isolate)
    seconds = time.perf_counter() - start
    t = data["time"] - settle * time_scale
    keep = t >= -1e-18
    t = np.clip(t[keep], 0.0, None)
    p_supply, p_ctl, drive, xbar = circuit_power(real, x, {k: v[keep] for k, v in data.items()})
    sup, sizes, L = real.spec.supply, real.layer_sizes, len(real.layer_sizes) - 1
    n_amp = 3 * sum(sizes[1:])
    quiescent = n_amp * sup.quiescent_current * (sup.vdd - sup.vss) * t_end * time_scale
    amplifiers = _integrate(t, p_supply)
    drivers = _integrate(t, drive)
    controller = _integrate(t, p_ctl)
    out = np.stack([data[neuron_name(L, "rate", k)][keep] for k in range(sizes[-1])], 1)
    settled = settling_time(t, out)
    report = EnergyReport("circuit", t_end * time_scale, amplifiers + drivers + controller,
                          _integrate(t, xbar), amplifiers, quiescent, drivers, controller,
                          settled, forward_macs(real), seconds)
    if settled is not None:
        report.to_settle = _integrate(t, p_supply + p_ctl + drive, settled)
    return report, data


def energy_by_layers(real: Realisation, x, runs: list, t_end: float,
                     time_scale: float = 1e-6, settle: float = 1.0,
                     seconds: float = 0.0) -> EnergyReport:
    """:func:`circuit_energy` of an inference simulated layer by layer
    (:func:`~dfc_analog.circuit.simulate.simulate_inference_by_layers`; ``runs`` its vectors per
    layer, ``seconds`` its wall time).

    Each run's terms are integrated over its own time points: layer k's amplifiers as ngspice
    measured their supply current, its crossbars and drivers (:func:`layer_crossbar_power`, with
    wire resistance :func:`layer_flows`) from its virtual grounds and from run k−1's rows
    (linear between that run's points, as the run's driver sources are), the controller from the
    last run. What a run lacks is added: the load of layer k's W crossbar on layer k−1's row
    stages, whose class-B outputs draw their own current (r − v_p) / R_r (run k−1) plus that
    load, and the load of the other layers' Q crossbars on the controller's summers (linear
    between their runs' points), whose own current is (u − v_sm) / R plus Q_L's load (the last
    run)."""
    solve_meshes(real)
    sup, sizes, L = real.spec.supply, real.layer_sizes, len(real.layer_sizes) - 1
    vs, R, t_on, wired = real.v_scale, real.resistance, settle * time_scale, _wired(real)
    x = np.asarray(x, dtype=np.float64).reshape(-1) * vs

    def on(run, names, at):
        """(T, n) vectors ``names`` of ``run`` at the absolute times ``at`` (s)."""
        return np.stack([np.interp(at, run["time"], run[n]) for n in names], 1)

    def neurons(kind, i):
        return [neuron_name(i, kind, k) for k in range(sizes[i])]

    def window(run):
        return run["time"][run["time"] - t_on >= -1e-18]

    u_names = [controller_name("u", m) for m in range(sizes[-1])]
    at_last = window(runs[-1])
    u_extra = np.zeros((at_last.size, sizes[-1]))   # the summers' load in the other layers' Q
    terms = {"amplifiers": [], "drivers": [], "crossbar": []}
    for k, run in enumerate(runs, start=1):
        at = window(run)
        vm, u = on(run, neurons("vg", k), at), on(run, u_names, at) / vs
        if k == 1:
            pos, neg = np.broadcast_to(x, (at.size, x.size)), np.broadcast_to(-x, (at.size, x.size))
        else:
            pos, neg = on(runs[k - 2], neurons("rate", k - 1), at), \
                on(runs[k - 2], neurons("raten", k - 1), at)
        lr = real.layers[k - 1]
        if wired:
            f = layer_flows(real, k - 1, vm, pos, neg, u)
            xbar, drive = _layer_flow_power(f, k == 1)
            n = sizes[k - 1]
            load = np.concatenate([f["I_W"][:, 1:2 * n:2], f["I_W"][:, 0:2 * n:2]], 1)
            u_load = f["I_Q"][:, 1::2]
        else:
            xbar, drive = layer_crossbar_power(real, k - 1, vm, pos, neg, u)
            G_n, G_p, GQ = lr.G_neg.numpy(), lr.G_pos.numpy(), lr.GQ_neg.numpy()
            load = np.concatenate([pos * G_n.sum(0) - vm @ G_n, neg * G_p.sum(0) - vm @ G_p], 1)
            u_load = u * vs * GQ.sum(0) - vm @ GQ
        amps = -(sup.vdd * on(run, ["vdd#branch"], at)[:, 0] +
                 sup.vss * on(run, ["vss#branch"], at)[:, 0])
        if k > 1:                         # layer k−1's row stages also drive W_k
            own = np.concatenate([(pos - on(runs[k - 2], neurons("vp", k - 1), at)) / R,
                                  (neg - on(runs[k - 2], neurons("vn", k - 1), at)) / R], 1)
            amps = amps + _class_b(sup, own + load) - _class_b(sup, own)
        if k < L:
            u_extra += np.stack([np.interp(at_last, at, c) for c in u_load.T], 1)
        for name, power in (("amplifiers", amps), ("drivers", drive), ("crossbar", xbar)):
            terms[name].append((np.clip(at - t_on, 0.0, None), power))
    last, t_last = runs[-1], np.clip(at_last - t_on, 0.0, None)
    u_last = on(last, u_names, at_last)
    own = (u_last - on(last, [f"xctl_{m}.sm" for m in range(sizes[-1])], at_last)) / R + \
        u_load                            # Q_L's, from the loop's last pass
    ctl = -(sup.vdd * on(last, ["vddc#branch"], at_last)[:, 0] +
            sup.vss * on(last, ["vssc#branch"], at_last)[:, 0]) + \
        _class_b(sup, own + u_extra) - _class_b(sup, own)
    terms["controller"] = [(t_last, ctl)]
    energy = {name: sum(_integrate(t, p) for t, p in parts) for name, parts in terms.items()}
    settled = settling_time(t_last, on(last, neurons("rate", L), at_last))
    n_amp = 3 * sum(sizes[1:])
    quiescent = n_amp * sup.quiescent_current * (sup.vdd - sup.vss) * t_end * time_scale
    report = EnergyReport("circuit", t_end * time_scale,
                          energy["amplifiers"] + energy["drivers"] + energy["controller"],
                          energy["crossbar"], energy["amplifiers"], quiescent, energy["drivers"],
                          energy["controller"], settled, forward_macs(real), seconds)
    if settled is not None:
        report.to_settle = sum(_integrate(t, p, settled) for name in
                               ("amplifiers", "drivers", "controller") for t, p in terms[name])
    return report


def circuit_power(real: Realisation, x, data: dict) -> tuple:
    """(network amplifiers, controller, drivers, crossbar dissipation), each (T,) W, of the
    crossbar netlist's saved vectors ``data`` (:func:`~dfc_analog.circuit.crossbar.saved_vectors`,
    T time points, or one at an operating point) for the input ``x`` (n_0,): the supplies
    V_dd, V_ss and V_ddc, V_ssc as ngspice measured them, the drivers and the crossbar from the
    node voltages (module docstring)."""
    sup, sizes = real.spec.supply, real.layer_sizes
    L = len(sizes) - 1

    def nodes(kind, i):
        return np.stack([data[neuron_name(i, kind, k)] for k in range(sizes[i])], 1)

    u = np.stack([data[controller_name("u", m)] for m in range(sizes[-1])], 1) / real.v_scale
    xbar, drive = crossbar_power(real, x, [nodes("vg", i) for i in range(1, L + 1)],
                                 [nodes("rate", i) for i in range(1, L + 1)],
                                 [nodes("raten", i) for i in range(1, L + 1)], u)
    return (-(sup.vdd * data["vdd#branch"] + sup.vss * data["vss#branch"]),
            -(sup.vdd * data["vddc#branch"] + sup.vss * data["vssc#branch"]), drive, xbar)


def model_energy(real: Realisation, params: ControllerParams, x, r_star, t_end: float, times,
                 time_scale: float = 1e-6) -> EnergyReport:
    """The model's estimate of :func:`circuit_energy`: the emulation of the same phase
    (:mod:`dfc_analog.model.hardware`) and the power terms of the module docstring on its
    trajectory."""
    from dfc_analog.solvers.dormand_prince import dormand_prince
    start = time.perf_counter()
    solve_meshes(real)
    model = HardwareModel(real, params, time_scale)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))[None]
    times = torch.as_tensor(np.asarray(times, dtype=np.float64))
    target = None if r_star is None else \
        torch.as_tensor(np.asarray(r_star, dtype=np.float64))[None]
    dyn = model.dynamics(xt, target)
    with torch.no_grad():
        y0 = model.feedforward(torch.zeros_like(xt) if r_star is None else xt)["state"]
        states = dormand_prince(dyn, y0, times.tolist(), 1e-9, 1e-9, 10_000_000)
        s = dyn.signals(states[:, 0])
    seconds = time.perf_counter() - start
    t = times.numpy() * time_scale
    report, power = model_power(model, s, np.asarray(x, dtype=np.float64), t)
    report.settling_time = settling_time(t, s["rate"][:, model.offsets[-2]:].numpy() *
                                         real.v_scale)
    if report.settling_time is not None:
        report.to_settle = _integrate(t, power, report.settling_time)
    report.seconds = seconds
    return report


def model_power(model: HardwareModel, s: dict, x: np.ndarray, t: np.ndarray) -> tuple:
    """(EnergyReport, total power (T,) W): the energy terms (module docstring) of the
    emulation's signals ``s`` (T, ·) at times ``t`` (s)."""
    real, vs = model.real, model.real.v_scale
    sup, sizes = real.spec.supply, real.layer_sizes
    L = len(sizes) - 1

    def layers(a):
        return [model._layer(a, i).numpy() * vs for i in range(L)]

    p, r_pos, r_neg = layers(s["p"]), layers(s["rate"]), layers(s["r_neg"])
    wired = _wired(real)
    if wired:
        flows = column_flows(real, x, p, r_pos, r_neg, s["u"].numpy())
        xbar, drive = _flow_power(flows)
    else:
        xbar, drive = crossbar_power(real, x, p, r_pos, r_neg, s["u"].numpy())
    a = model.activation(s["soma"]).numpy() * vs
    R_f = torch.cat([lr.R_f for lr in real.layers]).numpy()
    # output currents (A) of every op-amp: somas, then the rows r⁺ and r⁻
    i_soma = (s["basal"] + s["apical"]).numpy() * vs / R_f
    i_pos = a / real.resistance
    i_neg = -a / real.resistance
    # the output rows r⁺_L also feed the controller's error stage through its input R
    i_pos[:, model.offsets[-2]:] += (r_pos[-1] - s["controller"]["vm_E"].numpy() * vs) / \
        real.resistance
    for i in range(1, L):           # the rows drive the next layer's crossbar
        lr, sl = real.layers[i], slice(model.offsets[i - 1], model.offsets[i])
        if wired:                   # its ladders: the row currents per cell, in wire order
            i_pos[:, sl] += flows[i]["I_W"][:, 1:2 * sizes[i]:2]
            i_neg[:, sl] += flows[i]["I_W"][:, 0:2 * sizes[i]:2]
            continue
        vm = p[i]
        G_n, G_p = lr.G_neg.numpy(), lr.G_pos.numpy()
        i_pos[:, sl] += r_pos[i - 1] * G_n.sum(0) - vm @ G_n
        i_neg[:, sl] += r_neg[i - 1] * G_p.sum(0) - vm @ G_p
    out = np.concatenate([i_soma, i_pos, i_neg], axis=1)
    if wired:                       # the rows u: the odd cells of the Q ladders
        u_load = sum(f["I_Q"][:, 1::2] for f in flows)
    else:
        uu = s["u"].numpy() * vs
        u_load = sum(uu * lr.GQ_neg.numpy().sum(0) - p[i] @ lr.GQ_neg.numpy()
                     for i, lr in enumerate(real.layers))
    i_ctl = controller_currents(model, s["controller"], u_load)
    p_amp, p_ctl = (_class_b(sup, i) for i in (out, i_ctl))
    window = float(t[-1] - t[0])
    quiescent = out.shape[1] * sup.quiescent_current * (sup.vdd - sup.vss) * window
    amplifiers = _integrate(t, p_amp)
    drivers = _integrate(t, drive)
    controller = _integrate(t, p_ctl)
    power = p_amp + p_ctl + drive
    report = EnergyReport("model", window, amplifiers + drivers + controller,
                          _integrate(t, xbar), amplifiers, quiescent, drivers, controller, None,
                          forward_macs(real))
    return report, power


def _class_b(sup, currents: np.ndarray) -> np.ndarray:
    """Supply power (T,) W of op-amps with output currents ``currents`` (T, n) A: each draws
    I_q (V_dd − V_ss) and its output current from V_dd (> 0) or V_ss (< 0)."""
    return (sup.vdd * currents.clip(min=0) + sup.vss * currents.clip(max=0)).sum(1) + \
        currents.shape[1] * sup.quiescent_current * (sup.vdd - sup.vss)


def controller_currents(model: HardwareModel, ctl: dict, u_load: np.ndarray) -> np.ndarray:
    """Output currents (T, 4 n_L; 3 n_L with k_p = 0) in A of the controller's op-amps at its
    signals ``ctl`` (:class:`~dfc_analog.model.hardware.OpAmpController`, model units, all
    resistors R = R_in): the error stage (o_E − V₋,E) / R into its feedback resistor; the
    integrator, by KCL at its V₋ = p, −[(e − p) + α_t (o_P − p)] / R through C_u, its leak and
    reset, plus (o_I − V₋,S) / R into the summer; the proportional stage
    (o_P − V₋,P) / (k_p R) + (o_P − V₋,S) / R + α_t (o_P − p) / R; the summer (u − V₋,S) / R
    plus ``u_load`` (T, n_L), the current its rows u drive into the Q crossbars."""
    c = {k: v.numpy() for k, v in ctl.items() if torch.is_tensor(v)}
    ops, k = model.ctl, model.real.v_scale / model.real.resistance
    o_E = np.clip(c["n_E"], -model.rail, model.rail)
    p, o_I, o_P, e = c["p_I"], c["o_I"], c["o_P"], c["error"]
    i_E = k * (o_E - c["vm_E"])
    i_I = k * (-(e - p) - ops.alpha_t * (o_P - p) + (o_I - c["vm_S"]))
    i_S = k * (c["u"] - c["vm_S"]) + u_load
    if ops.k_p == 0:
        return np.concatenate([i_E, i_I, i_S], axis=1)
    i_P = k * ((o_P - c["vm_P"]) / ops.k_p + (o_P - c["vm_S"]) + ops.alpha_t * (o_P - p))
    return np.concatenate([i_E, i_I, i_P, i_S], axis=1)
