"""Realisation → crossbar netlist: the network on analog hardware, as a designer draws it.

The circuit of :mod:`dfc_analog.hardware.realise` with every device value of one
:class:`~dfc_analog.hardware.Realisation` written as a number (ngspice's ``agauss`` would
re-draw at every reference), so that ``ngspice -b`` runs the file unchanged and the torch
emulation (:mod:`dfc_analog.model.hardware`) integrates exactly these equations:

    dfc_opamp          one-pole op-amp macromodel: input offset (a series source, the
                       instance's ``os``), transconductance g_m into R_o ‖ C_o (A₀ = g_m R_o,
                       pole 1/(2π R_o C_o), GBW = A₀ f_p), a buffer clamped at the rails; its
                       output current and a quiescent current I_q are drawn from the supply
                       pins vdd / vss (class-B output stage)
    crossbar tiles     each layer's W_i (rows: the rates r and −r of the layer below, and ±V_ref
                       for the bias) and Q_i (rows: u and −u) split into tiles of at most
                       crossbar_size rows; each tile column is one wire with a resistor per
                       device (G⁺ on the inverted row, G⁻ on the row) and a 0 V sense source
                       (VsW / VsQ: its current is the column current) into the soma's virtual
                       ground; with ``[synapse] wire_resistance`` the wire is a ladder, one
                       segment per cell (:mod:`dfc_analog.hardware.wires`), and with
                       ``row_wire_resistance`` each row of a tile is one too: the row's driver,
                       a segment to the cell of the tile's first column, one between the cells
                       of consecutive columns (node l<i>_t<a>_wr<c>_k of cell row c at column
                       k; tiles of at most crossbar_size columns), each cell between its row
                       node and its column node: the tile is the 2-D mesh
    soma               op-amp with R_f ‖ C_f from virtual ground l<i>_vg_k to output
                       l<i>_soma_k: τ_v = R_f C_f (an inverting leaky integrator)
    rate               differential pair I_b φ(g_k (v − δ_k) / v_scale) (behavioural current
                       source, I_b = v_scale / R_r) between the virtual grounds of two
                       transimpedance stages (feedback R_r) whose outputs drive the rows
                       l<i>_rate_k = r and l<i>_raten_k = −r
    controller         eq. (4) on four dfc_opamp stages per output (subcircuit
                       dfc_controller_hw: difference amplifier, switch, inverting integrator
                       with leak and reset, proportional stage, summer; node ctl_int_m carries
                       −u_int), its output u and an inverted copy ctl_un_m = −u (an ideal
                       inverter) driving the Q rows
    supplies           Vdd, Vss (the network's amplifiers' only source of power), Vddc, Vssc
                       (the controller's op-amps: its own line in the energy report) and the
                       reference rows

Layer-1 rows carry the constant input: by default (``sum_inputs``) each tile column of W_1 is
written as its exact Norton equivalent, a current Σ_j G_j V_j into the column and the
conductance Σ_j G_j to ground (the n_0 n_1 resistors would dominate the circuit matrix); with
wire resistance the whole tile column, bias rows included, is written as the Norton equivalent of
its ladder, Σ_c T_c V_c and Σ_c T_c; on a mesh the tile's columns are coupled (I = T V + S V₋):
its Norton equivalent adds a resistor 1/S_kk' between the sense ends of every two columns k, k'
of the tile (S's off-diagonal; Σ_c T_kc to ground is then exactly its diagonal).

Read noise as a process (the realisation's ``read_sigma``, :mod:`dfc_analog.hardware.devices`):
the devices of a column fluctuate independently, G_j + σ_j ξ_j(t), and their current
Σ_j σ_j h_j ξ_j(t) V_j reaches the sense end (h_j = 1 without wire resistance, else the share of
device j's current that the wires deliver there, :mod:`dfc_analog.hardware.wires`: the σ_j h_j
of :func:`~dfc_analog.hardware.wires.wired_layers`, the emulation's too); it has at every t the
law of σ_col(t) ξ(t), σ_col² = Σ_j σ_j² h_j² V_j(t)². So each column (neuron) gets one source,
not one per device (a 784-256-256-256-10 net has 670k):

    Vrn<i>_k  l<i>_rn_k 0   unit noise ξ: TRNOISE(1 t_s 0 0) (t_s = read_interval), or a PWL
                            of given samples (a reproducible path: the emulation's)
    Brn<i>_k  0 l<i>_vg_k   I = sqrt(Σ_j σ_j² h_j² V(row_j)²) · V(l<i>_rn_k), into the virtual
                            ground

(constant rows, the input and ±V_ref, summed into one number). ngspice 39 seeds TRNOISE from
its process id at start-up: neither ``.option seed`` nor ``setseed`` fixes the path (tried), so
every run is an independent realisation of the noise; a reproducible path is a PWL.
"""
from __future__ import annotations

import math

import numpy as np

from dfc_analog.circuit.graph import controller_name, neuron_name
from dfc_analog.circuit.netlist import (SWITCH_RISE, SpiceOptions, _fmt, _wrap,
                                        analysis_line,
                                        controller_lines, options_line,
                                        output_times)
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.realise import Realisation
from dfc_analog.hardware.wires import column_tiles, wired_layers
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import OpAmpController

HARDWARE_PHASES = ("op", "feedforward", "wake", "inference")
OPAMP_RO = 1e6      # Ω, the macromodel's internal resistance R_o (g_m = A₀ / R_o)
# The controller switch's edge in τ_u: ngspice stalls at tight tolerance on the ideal netlist's
# 1e-9 τ_u edge (two breakpoints 1e-15 s apart) once op-amps sit behind the switch.
CONTROLLER_RISE = 1e-8
_PHI_EXPR = {"tanh": "tanh({z})", "linear": "({z})", "relu": "max({z},0)",
             "sigmoid": "1/(1+exp(-({z})))"}


def rows(layer: int, k: int | None = None) -> tuple:
    """(row r, row −r) node names of layer ``layer``'s neuron k (layer 0: the input)."""
    if layer == 0:
        return f"in_{k}", f"inn_{k}"
    return neuron_name(layer, "rate", k), neuron_name(layer, "raten", k)


def sense_names(real: Realisation) -> dict:
    """The 0 V sense sources per (kind 'W' or 'Q', layer i, neuron k): a list over the tiles."""
    tile, n_L = real.spec.crossbar_size, real.layer_sizes[-1]
    out = {}
    for i, n_in in enumerate(real.layer_sizes[:-1], start=1):
        n_rows_W = n_in + 1                          # + the bias reference row
        for k in range(real.layer_sizes[i]):
            out[("W", i, k)] = [f"vsw{i}_{k}_t{a}" for a in range(math.ceil(n_rows_W / tile))]
            out[("Q", i, k)] = [f"vsq{i}_{k}_t{a}" for a in range(math.ceil(n_L / tile))]
    return out


def saved_vectors(real: Realisation, layers=None) -> list:
    """What a simulation keeps: somas, both rows, virtual grounds, controller nodes, the column
    sense currents and the supply currents (the network's and the controller's); of the
    ``layers`` (None: all) where the netlist holds only those, and then also what gives the
    output currents of the amplifiers that drive other layers' crossbars (an energy assembled
    from runs of single layers, :func:`~dfc_analog.circuit.energy.energy_by_layers`): the
    row stages' virtual grounds l<i>_vp_k, l<i>_vn_k and the controller summers' ``xctl_m.sm``."""
    names = []
    sizes = real.layer_sizes
    keep = range(1, len(sizes)) if layers is None else layers
    for i in keep:
        names += [neuron_name(i, c, k) for c in ("soma", "rate", "raten", "vg") +
                  (() if layers is None else ("vp", "vn")) for k in range(sizes[i])]
    names += [controller_name(s, m) for s in ("error", "int", "u") for m in range(sizes[-1])]
    if layers is not None:
        names += [f"xctl_{m}.sm" for m in range(sizes[-1])]
    return names + [f"{v}#branch" for (_, i, _), tiles in sense_names(real).items()
                    if i in keep for v in tiles] + \
        ["vdd#branch", "vss#branch", "vddc#branch", "vssc#branch"]


def _layer_subset(real: Realisation, layers, drivers) -> tuple:
    """(sorted layers, {j: (t, rate, raten)} of the driven input layers) of
    :func:`write_crossbar_netlist`, checked."""
    L = len(real.layer_sizes) - 1
    if layers is None:
        return list(range(1, L + 1)), {}
    layers = sorted(set(int(i) for i in layers))
    if not layers or layers[0] < 1 or layers[-1] > L:
        raise ConfigError(f"layers must be numbers from 1 to {L}, got {layers}.")
    if real.read_interval is not None and len(layers) < L:
        raise ConfigError("a netlist of some layers only has no read-noise process; write the "
                          "whole network.")
    drivers = dict(drivers or {})
    needed = sorted({i - 1 for i in layers if i > 1 and i - 1 not in layers})
    if sorted(drivers) != needed:
        raise ConfigError(f"the rows of layers {needed} need drivers (and only those), got "
                          f"{sorted(drivers)}.")
    out = {}
    for j in needed:
        t, rate, raten = (np.asarray(a, dtype=np.float64) for a in drivers[j])
        shape = (t.shape[0], real.layer_sizes[j])
        if t.ndim != 1 or rate.shape != shape or raten.shape != shape or \
                not np.all(np.diff(t) > 0):
            raise ConfigError(f"drivers of layer {j} must be increasing times (T,) and rates "
                              f"(T, {real.layer_sizes[j]}) V, got {t.shape}, {rate.shape}, "
                              f"{raten.shape}.")
        out[j] = (t, rate, raten)
    return layers, out


def opamp_subcircuit(real: Realisation) -> list:
    amp, sup = real.spec.amplifier, real.spec.supply
    gm = amp.gain / OPAMP_RO
    co = amp.pole_time / OPAMP_RO
    out = f"Bo o1 0 V = min(max(V(n1),{_fmt(-amp.rail)}),{_fmt(amp.rail)})" \
        if math.isfinite(amp.rail) else "Eo o1 0 n1 0 1"
    return [".subckt dfc_opamp inp inn out vdd vss os=0",
            f"* one-pole op-amp: A0 = gm Ro = {amp.gain:g}, GBW = {amp.gbw:g} Hz, pole "
            f"{amp.gbw / amp.gain:.4g} Hz, rails +-{amp.rail:g} V, "
            f"Iq = {sup.quiescent_current:g} A; os = input offset",
            "Vos inpo inp DC {os}",
            f"Gm 0 n1 inpo inn {_fmt(gm)}",
            f"Ro n1 0 {_fmt(OPAMP_RO)}",
            f"Co n1 0 {_fmt(co)}",
            out,
            "Vsense o1 out DC 0",
            "Bsrc vdd 0 I = max(i(Vsense),0)",
            "Bsnk 0 vss I = max(-i(Vsense),0)",
            f"Iq vdd vss DC {_fmt(sup.quiescent_current)}",
            ".ends", ""]


def _resistors(prefix: str, column: str, pairs) -> list:
    """One resistor per device with a non-zero conductance: (name suffix, row node, G)."""
    return [f"R{prefix}{suffix} {column} {row} {_fmt(1.0 / G)}" for suffix, row, G in pairs
            if G > 0]


def controller_opamp_subcircuit(real: Realisation, params: ControllerParams,
                                time_scale: float) -> list:
    """The ``dfc_controller_hw`` subcircuit: eq. (4) on four ``dfc_opamp`` stages (equations
    in :class:`dfc_analog.model.hardware.OpAmpController`), the pins of ``dfc_controller``
    (``integ`` carries the inverting integrator's −u_int, ``prop`` −k_p e) and its own supply
    pins; ``osE`` .. ``osS`` the op-amps' input offsets."""
    R = real.resistance
    C_u = params.tau_u * time_scale / R
    leak = []
    if params.alpha > 0:
        leak.append(f"Rleak integ ip {_fmt(R / params.alpha)}")
        if params.leak == "total" and params.k_p > 0:
            leak.append(f"Rleakp prop ip {_fmt(R / params.alpha)}")
    prop = [f"Rp1 error pm {_fmt(R)}", f"Rp2 pm prop {_fmt(params.k_p * R)}",
            "XP 0 pm prop vdd vss dfc_opamp os={osP}"] if params.k_p > 0 else \
        ["* k_p = 0: no proportional stage", "Vprop prop 0 DC 0"]
    return [".subckt dfc_controller_hw target rate enable error integ prop u vdd vss osE=0 "
            "osI=0 osP=0 osS=0",
            f"* eq. (4) on op-amps: e = enable (r* - r_L) (difference amplifier and switch), "
            f"integ = -u_int (inverting integrator, tau_u = R C_u, leak '{params.leak}' "
            f"alpha = {params.alpha:g}, reset while off), prop = -k_p e, u = -(integ + prop)",
            "Btg tg 0 V = V(enable)*V(target)",
            f"Re1 tg ep {_fmt(R)}", f"Re2 ep 0 {_fmt(R)}", f"Re3 rate em {_fmt(R)}",
            f"Re4 em eo {_fmt(R)}",
            "XE ep em eo vdd vss dfc_opamp os={osE}",
            "Bsw error 0 V = V(enable)*V(eo)",
            f"Ri error ip {_fmt(R)}", f"Ci ip integ {_fmt(C_u)}", *leak,
            f"Breset integ ip I = (1-V(enable))*(V(integ)-V(ip))*"
            f"{_fmt(OpAmpController.RESET / R)}",
            "XI 0 ip integ vdd vss dfc_opamp os={osI}",
            *prop,
            f"Rs1 integ sm {_fmt(R)}", f"Rs2 prop sm {_fmt(R)}", f"Rs3 sm u {_fmt(R)}",
            "XS 0 sm u vdd vss dfc_opamp os={osS}",
            ".ends", ""]


def _column(prefix: str, wire: str, cells: list, R_w: float) -> list:
    """A tile column: its ``cells`` (name suffix, row node, G) in wire order; with wire
    resistance R_w a ladder (:mod:`dfc_analog.hardware.wires`): cell c on node <wire>_c<c>, a
    segment R<prefix>s_<wire>_<c> to the next cell, the last one to the sense end ``wire``."""
    if R_w == 0:
        return _resistors(prefix, wire, cells)
    nodes = [f"{wire}_c{c}" for c in range(len(cells))] + [wire]
    return [f"R{prefix}{suffix} {nodes[c]} {row} {_fmt(1.0 / G)}"
            for c, (suffix, row, G) in enumerate(cells) if G > 0] + \
        [f"R{prefix}s_{wire}_{c} {nodes[c]} {nodes[c + 1]} {_fmt(R_w)}"
         for c in range(len(cells))]


def _row_wires(prefix: str, name: str, drivers: list, columns: int, tile: int,
               R_row: float) -> list:
    """The row wires of one row tile ``name`` (l<i>_t<a>_w or _q) of crossbar ``prefix`` (W or
    Q) on a mesh (:mod:`dfc_analog.hardware.wires`): per cell row c, driven from node
    ``drivers[c]``, and per tile of at most ``tile`` of the ``columns`` columns, a segment
    R<prefix>r_<node> of R_row from the driver to the first column's node <name>r<c>_k, then
    one to each next column's."""
    lines = []
    for c, driver in enumerate(drivers):
        for cols in column_tiles(columns, tile):
            previous = driver
            for k in range(cols.start, cols.stop):
                node = f"{name}r{c}_{k}"
                lines.append(f"R{prefix}r_{node} {previous} {node} {_fmt(R_row)}")
                previous = node
    return lines


def _mesh_norton(wired, i: int) -> list:
    """The coupling resistors of a layer-1 mesh's Norton equivalent (module docstring): 1/S_kk'
    between the sense ends of every two columns of each W tile."""
    lines = []
    for a, cols, S in wired.tiles_W:
        S = S.numpy()
        for k in range(S.shape[0]):
            for m in range(k + 1, S.shape[0]):
                if S[k, m] != 0:
                    K, M = cols.start + k, cols.start + m
                    lines.append(f"RWm{i}_{K}_{M}_t{a} l{i}_t{a}_w_{K} l{i}_t{a}_w_{M} "
                                 f"{_fmt(1.0 / float(S[k, m]))}")
    return lines


def _on_rows(cells: list, name: str, k: int, R_row: float) -> list:
    """A tile column's ``cells`` (name suffix, row node, G) in wire order, on a mesh
    (R_row > 0) moved from their drivers to their row wires' nodes at column k."""
    if R_row == 0:
        return cells
    return [(suffix, f"{name}r{c}_{k}", G) for c, (suffix, _, G) in enumerate(cells)]


def _ladder_norton(wired, k: int, a: int, js: list, v_in, v_ref: float, wire: str,
                   source) -> list:
    """A layer-1 tile column with wire resistance: every row is constant (the inputs ``v_in``
    in V, stepping by ``source``, and ±V_ref), so the ladder is exactly its Norton equivalent,
    Σ T V into the sense end ``wire`` and Σ T to ground (:mod:`dfc_analog.hardware.wires`)."""
    n_in = wired.G_pos.shape[1]
    inputs = [j for j in js if j < n_in]
    T_pos, T_neg = wired.G_pos[k].numpy(), wired.G_neg[k].numpy()
    total = math.fsum(float(T_pos[j]) + float(T_neg[j]) for j in inputs)
    lines = [f"IW1_{k}_t{a} 0 {wire} " + source(math.fsum(
        float(T_pos[j]) * -v_in[j] + float(T_neg[j]) * v_in[j] for j in inputs))] \
        if inputs else []
    if n_in in js:
        Tb_pos, Tb_neg = float(wired.Gb_pos[k]), float(wired.Gb_neg[k])
        total += Tb_pos + Tb_neg
        lines.append(f"IWB1_{k}_t{a} 0 {wire} DC {_fmt((Tb_neg - Tb_pos) * v_ref)}")
    return lines + ([f"RW1_{k}_t{a} {wire} 0 {_fmt(1.0 / total)}"] if total > 0 else [])


def read_noise_lines(real: Realisation, x: np.ndarray, t_on: float, noise=None) -> list:
    """The per-column read-noise sources (module docstring) of ``real`` for the input ``x``
    (n_0,): ``noise`` None writes TRNOISE, or unit samples (K+1, N) on the grid t_on + k t_s
    (s), the path 0 before t_on, as PWL sources."""
    vs, t_s, n_L = real.v_scale, real.read_interval, real.layer_sizes[-1]
    if noise is not None:
        noise = np.asarray(noise, dtype=np.float64)
        if noise.ndim != 2 or noise.shape[1] != sum(real.layer_sizes[1:]):
            raise ConfigError(f"read-noise samples must have shape (K+1, "
                              f"{sum(real.layer_sizes[1:])}), got {noise.shape}.")
    lines = [f"* read noise: one source per column, sigma_col = sqrt(sum_j (sigma_j h_j)^2 "
             f"V_j^2) (h_j: the wires' share), "
             f"unit noise sampled every {t_s:g} s"]
    column = 0
    for i, wired in enumerate(wired_layers(real), start=1):     # σ h: through the wires
        sp, sn, sbp, sbn, sqp, sqn = (t.numpy() for t in wired.layer.read_sigma)
        for k in range(real.layer_sizes[i]):
            constant = (float(sbp[k]) ** 2 + float(sbn[k]) ** 2) * vs * vs
            terms = []
            for j in range(real.layer_sizes[i - 1]):
                if i == 1:
                    constant += (float(sp[k, j]) ** 2 + float(sn[k, j]) ** 2) * (x[j] * vs) ** 2
                    continue
                for row, sigma in zip(rows(i - 1, j), (sn[k, j], sp[k, j])):
                    terms.append((float(sigma) ** 2, row))
            terms += [(float(sqp[k, m]) ** 2 + float(sqn[k, m]) ** 2, controller_name("u", m))
                      for m in range(n_L)]
            terms = [f"+{_fmt(var)}*V({row})*V({row})" for var, row in terms if var > 0]
            node = neuron_name(i, "rn", k)
            if noise is None:
                lines.append(f"Vrn{i}_{k} {node} 0 DC 0 TRNOISE(1 {_fmt(t_s)} 0 0)")
            else:
                corners = ([(0.0, 0.0)] if t_on > 0 else []) + \
                    [(t_on, float(noise[0, column]))] + \
                    [(t_on + n * t_s, float(noise[n, column])) for n in range(1, len(noise))]
                lines += _wrap(f"Vrn{i}_{k} {node} 0 PWL(",
                               [f"{_fmt(t)} {_fmt(v)}" for t, v in corners] + [")"], 6)
            lines += _wrap(f"Brn{i}_{k} 0 {neuron_name(i, 'vg', k)} I = "
                           f"V({node})*sqrt({_fmt(constant)}", terms + [")"], 6)
            column += 1
    return lines


def write_crossbar_netlist(real: Realisation, params: ControllerParams, x, r_star=None,
                           phase: str = "wake", t_end: float = 5.0, times=None,
                           settle: float = 1.0, options: SpiceOptions | None = None,
                           time_scale: float = 1e-6, read_noise=None, layers=None,
                           drivers: dict | None = None) -> str:
    """The crossbar netlist (module docstring) of ``real`` for input ``x`` (n_0,) and target
    ``r_star`` (n_L,; the wake phase), for ``phase`` 'op', 'feedforward' or 'wake' as
    :func:`dfc_analog.circuit.netlist.write_netlist`, or 'inference': the network at rest on
    a zero input until t_on = settle, then the input steps to ``x`` (controller off), for
    energy and settling time. The supply energy from t_on on is measured (``.meas e_supply``).
    A realisation with a read-noise process gets its per-column sources in the transient
    phases (:func:`read_noise_lines`; ``read_noise``: unit samples for PWL sources, None for
    TRNOISE).

    ``layers`` (numbers 1..L; None: all) writes those layers' crossbars and neurons only, with
    the controller. The op-amps' outputs are ideal sources, so a layer whose input layer j is
    left out sees exactly what it would see in the whole circuit when its rows r and -r are
    driven by j's waveforms: ``drivers[j] = (t, rate, raten)``, t (T,) s of this netlist's
    clock, rate and raten (T, n_j) V, written as B-sources ``pwl(TIME, ...)`` (a PWL source
    would put a breakpoint at each of the T corners, which ngspice's own output sets as close as
    1e-16 s around a switch, and stall the step control); the row loads on j's drivers are then
    not in the circuit.
    """
    if phase not in HARDWARE_PHASES:
        raise ConfigError(f"unknown phase '{phase}': choose one of "
                          f"{', '.join(HARDWARE_PHASES)}.")
    if math.isinf(real.spec.amplifier.gain):
        raise ConfigError(f"a crossbar netlist needs op-amps of finite gain and gain-bandwidth; "
                          f"hardware '{real.spec.name}' has ideal ones (set [amplifier] gain "
                          f"and gbw).")
    options = options or SpiceOptions()
    vs, R_r, tile = real.v_scale, real.resistance, real.spec.crossbar_size
    sizes, L = real.layer_sizes, len(real.layer_sizes) - 1
    n_L = sizes[-1]
    whole = layers is None
    layers, drivers = _layer_subset(real, layers, drivers)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape != (sizes[0],):
        raise ConfigError(f"input x must have shape ({sizes[0]},), got {x.shape}.")
    if phase == "wake":
        if r_star is None:
            raise ConfigError("the wake phase needs the target r*.")
        r_star = np.asarray(r_star, dtype=np.float64).reshape(-1)
    else:
        r_star = np.zeros(n_L)
    if phase != "op":
        if not (t_end > 0 and (settle > 0 if phase in ("wake", "inference") else settle >= 0)):
            raise ConfigError(f"simulation time and settling time must be positive, got "
                              f"{t_end} and {settle} tau_u.")
        times = output_times(t_end, t_end / 100) if times is None else \
            np.asarray(times, dtype=np.float64).reshape(-1)
    spec, sup = real.spec, real.spec.supply
    lines = [
        f"* DFC network {'-'.join(map(str, sizes))} on '{spec.name}' hardware (realisation "
        f"seed {real.seed}) -- written by dfc_analog.circuit.crossbar",
        f"* {spec.description}" if spec.description else "*",
        f"* scaling: 1 tau_u = {time_scale:g} s, 1 model unit = {vs:g} V, R_r = {R_r:g} Ohm; "
        f"tau_v = {params.tau_v:g}, k_p = {params.k_p:g}, alpha = {params.alpha:g}",
        f"* devices: {spec.synapse.device}, G in [{spec.synapse.g_min:g}, "
        f"{spec.synapse.g_max:g}] S, crossbar tiles of at most {tile} rows",
        "* nodes: l<i>_vg_k soma virtual ground, l<i>_soma_k soma output v, l<i>_rate_k row r, "
        "l<i>_raten_k row -r,",
        "*   l<i>_t<a>_w_k / l<i>_t<a>_q_k column wire of W_i / Q_i tile a (sense source "
        "VsW<i>_k_t<a> / VsQ<i>_k_t<a>)" + (
            "; l<i>_t<a>_wr<c>_k / _qr<c>_k row wire of cell row c at column k"
            if spec.synapse.row_wire_resistance > 0 else ""),
        "* t = 0 of the model is the controller switch-on (the input step of an inference), at "
        "t_on = settle in this netlist", ""]
    lines += opamp_subcircuit(real)
    lines += controller_opamp_subcircuit(real, params, time_scale)
    lines += ["* supplies and the bias reference rows",
              f"Vdd vdd 0 DC {_fmt(sup.vdd)}", f"Vss vss 0 DC {_fmt(sup.vss)}",
              f"Vddc vddc 0 DC {_fmt(sup.vdd)}", f"Vssc vssc 0 DC {_fmt(sup.vss)}",
              f"Vrefp vref_p 0 DC {_fmt(vs)}", f"Vrefn vref_n 0 DC {_fmt(-vs)}", "",
              "* inputs x (layer 0): rows x and -x"]
    t_on = settle * time_scale

    def source(value: float) -> str:
        """A constant, or in the inference phase a step from 0 to ``value`` at t_on."""
        if phase != "inference":
            return f"DC {_fmt(value)}"
        return (f"PWL(0 0 {_fmt(t_on - SWITCH_RISE * time_scale)} 0 {_fmt(t_on)} "
                f"{_fmt(value)})")

    if 1 not in layers:
        lines.append("* (layer 1 is not in this netlist)")
    elif not options.sum_inputs:
        for j in range(sizes[0]):
            lines += [f"Vin_{j} in_{j} 0 {source(x[j] * vs)}",
                      f"Vinn_{j} inn_{j} 0 {source(-x[j] * vs)}"]
    else:
        lines.append("* (summed: each layer-1 tile column is its Norton equivalent)")
    senses = sense_names(real)
    R_w, R_row = spec.synapse.wire_resistance, spec.synapse.row_wire_resistance
    wires = R_w > 0 or R_row > 0
    wired = wired_layers(real, 1)[0] if wires and options.sum_inputs else None
    for j, (t, rate, raten) in drivers.items():
        lines.append(f"* layer {j} is not in this netlist: its rows r and -r as sources")
        for k in range(sizes[j]):
            for node, v in zip(rows(j, k), (rate[:, k], raten[:, k])):
                lines += _wrap(f"Bd_{node} {node} 0 V = pwl(TIME",
                               [f", {_fmt(a)}, {_fmt(b)}" for a, b in zip(t, v)] + [")"], 6)
    for i, lr in enumerate(real.layers, start=1):
        if i not in layers:
            continue
        G_pos, G_neg = lr.G_pos.numpy(), lr.G_neg.numpy()
        GQ_pos, GQ_neg = lr.GQ_pos.numpy(), lr.GQ_neg.numpy()
        n_in = sizes[i - 1]
        lines += ["", f"* layer {i}: crossbars W_{i} ({n_in}+1 rows incl. the bias row) and "
                      f"Q_{i} ({n_L} rows), {sizes[i]} columns, tiles of {tile} rows"]
        norton = i == 1 and options.sum_inputs
        if R_row > 0:               # the row wires of every tile, then the cells on them
            for a in range(len(senses[("W", i, 0)])):
                if not (norton and wires):
                    ends = [node for j in range(a * tile, min((a + 1) * tile, n_in + 1))
                            for node in (("vref_n", "vref_p") if j == n_in else
                                         rows(i - 1, j)[::-1])]
                    lines += _row_wires("W", f"l{i}_t{a}_w", ends, sizes[i], tile, R_row)
            for a in range(len(senses[("Q", i, 0)])):
                ends = [controller_name(kind, m) for m in range(a * tile, min((a + 1) * tile, n_L))
                        for kind in ("un", "u")]
                lines += _row_wires("Q", f"l{i}_t{a}_q", ends, sizes[i], tile, R_row)
            if norton:
                lines += _mesh_norton(wired, i)
        for k in range(sizes[i]):
            vg = neuron_name(i, "vg", k)
            for a, sense in enumerate(senses[("W", i, k)]):
                wire = f"l{i}_t{a}_w_{k}"
                lines.append(f"V{sense[1:]} {wire} {vg} DC 0")
                js = [j for j in range(a * tile, min((a + 1) * tile, n_in + 1))]
                devices = []
                for j in js:
                    if j == n_in:
                        devices += [(f"b{i}_{k}", "vref_n", float(lr.Gb_pos[k])),
                                    (f"bn{i}_{k}", "vref_p", float(lr.Gb_neg[k]))]
                    elif i > 1 or not options.sum_inputs:
                        r, rn = rows(i - 1, j)
                        devices += [(f"{i}_{k}_{j}", rn, float(G_pos[k, j])),
                                    (f"n{i}_{k}_{j}", r, float(G_neg[k, j]))]
                if norton and wires:
                    lines += _ladder_norton(wired.layer, k, a, js, x * vs, vs, wire, source)
                    devices = []
                elif norton:
                    inputs = [j for j in js if j < n_in]
                    current = math.fsum(float(G_pos[k, j]) * -x[j] * vs + float(G_neg[k, j]) *
                                        x[j] * vs for j in inputs)
                    total = math.fsum(float(G_pos[k, j]) + float(G_neg[k, j]) for j in inputs)
                    if total > 0:
                        lines += [f"IW1_{k}_t{a} 0 {wire} {source(current)}",
                                  f"RW1_{k}_t{a} {wire} 0 {_fmt(1.0 / total)}"]
                lines += _column("W", wire, _on_rows(devices, f"l{i}_t{a}_w", k, R_row), R_w)
            for a, sense in enumerate(senses[("Q", i, k)]):
                wire = f"l{i}_t{a}_q_{k}"
                lines.append(f"V{sense[1:]} {wire} {vg} DC 0")
                lines += _column("Q", wire, _on_rows([
                    item for m in range(a * tile, min((a + 1) * tile, n_L))
                    for item in ((f"{i}_{k}_{m}", controller_name("un", m), float(GQ_pos[k, m])),
                                 (f"n{i}_{k}_{m}", controller_name("u", m),
                                  float(GQ_neg[k, m])))], f"l{i}_t{a}_q", k, R_row), R_w)
        lines.append(f"* layer {i} neurons: soma R_f || C_f (tau_v), differential pair, "
                     f"row drivers")
        phi = _PHI_EXPR.get(real.activations[i - 1])
        if phi is None:
            raise ConfigError(f"no circuit realisation of the activation "
                              f"'{real.activations[i - 1]}'.")
        for k in range(sizes[i]):
            vg, soma = neuron_name(i, "vg", k), neuron_name(i, "soma", k)
            vp, vn = neuron_name(i, "vp", k), neuron_name(i, "vn", k)
            r, rn = rows(i, k)
            R_f = float(lr.R_f[k])
            z = f"{_fmt(float(lr.act_gain[k]) / vs)}*(V({soma})-({_fmt(float(lr.act_offset[k]))}))"
            lines += [f"Xs{i}_{k} 0 {vg} {soma} vdd vss dfc_opamp "
                      f"os={_fmt(float(lr.soma_offset[k]))}",
                      f"Rf{i}_{k} {vg} {soma} {_fmt(R_f)}",
                      f"Cf{i}_{k} {vg} {soma} {_fmt(params.tau_v * time_scale / R_f)}",
                      f"Ba{i}_{k} {vp} {vn} I = {_fmt(vs / R_r)}*{phi.format(z=z)}",
                      f"Xp{i}_{k} 0 {vp} {r} vdd vss dfc_opamp "
                      f"os={_fmt(float(lr.rate_offset_pos[k]))}",
                      f"Rp{i}_{k} {vp} {r} {_fmt(R_r)}",
                      f"Xn{i}_{k} 0 {vn} {rn} vdd vss dfc_opamp "
                      f"os={_fmt(float(lr.rate_offset_neg[k]))}",
                      f"Rn{i}_{k} {vn} {rn} {_fmt(R_r)}"]
    if real.read_interval is not None and phase != "op":
        lines += [""] + read_noise_lines(real, x, t_on, read_noise)
    targets = [(controller_name("target", m), float(r_star[m]) * vs) for m in range(n_L)]
    offsets = real.controller_offset if real.controller_offset is not None else np.zeros((4, n_L))
    lines += controller_lines("feedforward" if phase == "inference" else phase, settle, times,
                              time_scale, targets, L, n_L, lambda m: (
                                  "vddc vssc dfc_controller_hw " + " ".join(
                                      f"os{s}={_fmt(float(offsets[a][m]))}"
                                      for a, s in enumerate("EIPS"))), CONTROLLER_RISE)
    lines += [f"Eun_{m} {controller_name('un', m)} 0 {controller_name('u', m)} 0 -1"
              for m in range(n_L)]
    lines += ["", options_line(options)]
    lines += _wrap(".save", [f"i({v.removesuffix('#branch')})" if v.endswith("#branch") else v
                             for v in saved_vectors(real, None if whole else layers)], 8)
    lines.append(analysis_line(phase, times, t_end, settle, time_scale,
                               options.step_limit(params.tau_v)))
    if phase != "op":
        # the supplies are DC: energy = −(V_dd ∫ i(vdd) + V_ss ∫ i(vss)) (a par() power
        # expression would add a B-source to the circuit and stall tight transients)
        window = f"from={_fmt(t_on)} to={_fmt(t_on + t_end * time_scale)}"
        lines += [f".meas tran q_vdd INTEG i(vdd) {window}",
                  f".meas tran q_vss INTEG i(vss) {window}",
                  f".meas tran e_supply param='-({_fmt(sup.vdd)}*q_vdd+({_fmt(sup.vss)})*q_vss)'"]
        lines += _wrap(".print tran", [f"V({neuron_name(L, 'rate', m)})" for m in range(n_L)
                                       if L in layers]
                       + [f"V({controller_name('u', m)})" for m in range(n_L)], 8)
    lines.append(".end")
    return "\n".join(lines) + "\n"


def hardware_summary(real: Realisation, netlist: str) -> str:
    """One screen: the hardware, its devices per layer, amplifiers, tiles and the file size."""
    spec, sizes, tile = real.spec, real.layer_sizes, real.spec.crossbar_size
    n_L = sizes[-1]
    lines = [f"crossbar netlist: {'-'.join(map(str, sizes))} network on '{spec.name}' hardware "
             f"(realisation seed {real.seed})",
             f"devices: {spec.synapse.device}, G in [{spec.synapse.g_min:g}, "
             f"{spec.synapse.g_max:g}] S"
             + (f", {spec.synapse.levels} states" if spec.synapse.levels else "")
             + f"; op-amps: A0 {spec.amplifier.gain:g}, GBW {spec.amplifier.gbw:g} Hz, offset "
               f"sigma {spec.amplifier.offset:g} V, rails +-{spec.amplifier.rail:g} V"]
    for i, lr in enumerate(real.layers, start=1):
        G = _all_conductances(lr)
        tiles = f"{math.ceil((sizes[i - 1] + 1) / tile)} + {math.ceil(n_L / tile)}"
        lines.append(f"layer {i}: {G.size} devices, G {G.min():.3g} .. {G.max():.3g} S (mean "
                     f"{G.mean():.3g}), R_f {float(lr.R_f.min()):.4g} .. "
                     f"{float(lr.R_f.max()):.4g} Ohm, {tiles} tiles (W + Q) per column, "
                     f"{3 * sizes[i]} op-amps")
    R_w, R_row = spec.synapse.wire_resistance, spec.synapse.row_wire_resistance
    lines.append(f"controller: {4 * n_L} op-amps (error, integrator, proportional, summer per "
                 f"output); wires: "
                 + (f"{R_w:g} Ohm per column cell segment, {R_row:g} Ohm per row cell segment"
                    if R_w > 0 or R_row > 0 else "ideal"))
    lines.append(f"netlist: {netlist.count(chr(10))} lines, {len(netlist.encode())} bytes")
    return "\n".join(lines)


def _all_conductances(lr) -> np.ndarray:
    """Every conductance of a layer as one numpy vector."""
    return np.concatenate([t.reshape(-1).numpy() for t in
                           (lr.G_pos, lr.G_neg, lr.Gb_pos, lr.Gb_neg, lr.GQ_pos, lr.GQ_neg)])
