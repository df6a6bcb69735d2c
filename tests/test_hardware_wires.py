"""Wire resistance of the crossbars (dfc_analog.hardware.wires): the column ladder against its
hand solution and an independent nodal solve, the IR drop against the textbook estimate, and the
emulation against the ladder netlist in ngspice, where the wires move every signal by tens of
per cent while the two simulators agree to ~1e-5. With row wires too each tile is a 2-D mesh:
its port admittances against a dense nodal solve, the row-only limit against the 1-D ladder
transposed, the 2-D IR drop against the first-order estimate, the mesh netlist's .op against
I = T V + S V₋, emulation against circuit (and a changed row-wire segment caught), energy.
Zero wire resistance changes nothing."""
import dataclasses
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from dfc_analog.circuit import crossbar
from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.circuit.energy import circuit_energy, model_energy
from dfc_analog.circuit.graph import Scaling
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.circuit.simulate import run_netlist, simulate_hardware_circuit
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, realise_network, wires
from dfc_analog.hardware.batch import stack_of
from dfc_analog.hardware.wires import (column_cells, column_tiles, driver_ports,
                                       ir_drop_estimate, ladder_gain, ladder_nodes,
                                       ladder_transfer, mesh_ports, tiles, wired_layers)
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation.compare import ValidationSettings, load_samples, validate_samples

from tests.test_hardware_circuit import SPEC, TIGHT, one_column
from tests.test_validate import needs_ngspice, run_dir  # noqa: F401 (fixture)


def wired(R_w: float, R_row: float = 0.0, tile: int = 256) -> HardwareSpec:
    return HardwareSpec.from_dict({**SPEC, "crossbar_size": tile, "synapse": {
        **SPEC["synapse"], "wire_resistance": R_w, "row_wire_resistance": R_row}})


def nodal(g: np.ndarray, V: np.ndarray, v_end: float, R_w: float):
    """(node voltages, current into the sense end) of one ladder by a dense nodal solve."""
    n, G = g.size, 1.0 / R_w
    K = np.diag(g.astype(float))
    for c in range(n):                     # segment c joins cell c to cell c + 1 (or the end)
        K[c, c] += G
        if c + 1 < n:
            K[c + 1, c + 1] += G
            K[c, c + 1] -= G
            K[c + 1, c] -= G
    rhs = g * V
    rhs[-1] += G * v_end
    u = np.linalg.solve(K, rhs)
    return u, G * (u[-1] - v_end)


def test_two_cells_by_hand():
    """Cells g₁ (far) on V₁ and g₂ (near) on V₂, a segment R between them and one from g₂ to the
    sense end at 0 V. The far branch g₁ + R is a conductance h = g₁ / (1 + g₁ R) from V₁ into
    node u₂; u₂ = (h V₁ + g₂ V₂) / (h + g₂ + 1/R); I = u₂ / R."""
    g1, g2, R = 20e-6, 7e-6, 3e3
    h = g1 / (1 + g1 * R)
    T = ladder_transfer(torch.tensor([g1, g2], dtype=torch.float64), R).numpy()
    denominator = R * (h + g2 + 1 / R)
    assert T == pytest.approx([h / denominator, g2 / denominator], rel=1e-14)
    one = ladder_transfer(torch.tensor([g1], dtype=torch.float64), R)
    assert float(one) == pytest.approx(g1 / (1 + g1 * R), rel=1e-14)    # g in series with R
    assert torch.equal(ladder_transfer(torch.tensor([g1, g2]), 0.0), torch.tensor([g1, g2]))


def test_ladder_against_an_independent_nodal_solve():
    gen = torch.Generator().manual_seed(3)
    g = torch.rand(4, 33, dtype=torch.float64, generator=gen) * 25e-6
    V = torch.randn(4, 33, dtype=torch.float64, generator=gen)
    v_end = torch.randn(4, dtype=torch.float64, generator=gen) * 1e-3
    R_w = 50.0
    T = ladder_transfer(g, R_w)
    u = ladder_nodes(g, V, v_end, R_w)
    for k in range(4):
        u_ref, I_ref = nodal(g[k].numpy(), V[k].numpy(), float(v_end[k]), R_w)
        assert np.abs(u[k].numpy() - u_ref).max() <= 1e-12
        I = float(T[k] @ V[k] - T[k].sum() * v_end[k])          # S = −Σ T
        assert I == pytest.approx(I_ref, rel=1e-11)


@pytest.mark.parametrize("n", [16, 512])
def test_ir_drop_against_the_textbook_estimate(n):
    """n equal cells at one voltage lose g R_w (n+1)(2n+1)/6 ≈ g R_w n²/3 of their current to
    first order; at a first-order drop of 1 % the exact ladder agrees to its second order
    (~1 % of the drop)."""
    g = 5e-6
    R_w = 0.01 / (g * (n + 1) * (2 * n + 1) / 6)
    T = ladder_transfer(torch.full((n,), g, dtype=torch.float64), R_w)
    drop = 1 - float(T.sum()) / (n * g)
    assert ir_drop_estimate(g, R_w, n) == pytest.approx(0.01)
    assert drop == pytest.approx(0.01, rel=0.02) and drop < 0.01


def test_zero_wire_resistance_is_todays_circuit_and_model(make_net):
    """Every preset but pcm-wires and pcm-mesh has ideal wires: the emulation reads the
    realisation's own conductances (the same objects) and the netlist has no wire segment."""
    for name in ("ideal", "pcm", "rram", "4bit", "8bit"):
        synapse = load_spec(name).synapse
        assert synapse.wire_resistance == 0.0 and synapse.row_wire_resistance == 0.0
    real = realise_network(make_net(), load_spec("pcm"), seed=1, v_scale=0.5)
    assert all(w.layer is l and w.S_W is None for w, l in zip(wired_layers(real), real.layers))
    text = write_crossbar_netlist(real, ControllerParams(), np.zeros(15), np.zeros(5))
    assert "RWs_" not in text and "RQs_" not in text and "IWB1_" not in text
    assert "RWr_" not in text and "RWm1_" not in text
    for name in ("wire_resistance", "row_wire_resistance"):
        with pytest.raises(ConfigError, match=f"synapse {name} must be a non-negative number"):
            HardwareSpec.from_dict({"synapse": {name: -1.0}})


def test_preset_with_wires_is_pcm_plus_the_wires():
    pcm, wires = load_spec("pcm"), load_spec("pcm-wires")
    assert wires.synapse.wire_resistance > 0 and not wires.is_ideal
    assert dataclasses.replace(wires.synapse, wire_resistance=0.0) == pcm.synapse
    assert wires.amplifier == pcm.amplifier and wires.crossbar_size == pcm.crossbar_size
    mesh = load_spec("pcm-mesh")
    assert mesh.synapse.row_wire_resistance > 0 and not mesh.is_ideal
    assert dataclasses.replace(mesh.synapse, row_wire_resistance=0.0) == wires.synapse
    assert not HardwareSpec.from_dict({"synapse": {"row_wire_resistance": 1.0}}).is_ideal


def nodal_mesh(g: np.ndarray, R_w: float, R_row: float, V: np.ndarray, V_sense: np.ndarray,
               source: tuple | None = None):
    """(sense currents (n_k,), driver currents (n_c,)) of one tile by a dense nodal solve of
    its mesh: row node (c, k) and column node (c, k) per cell, the drivers before column 0,
    the sense ends after the last row; R_w = 0 ties the cells to the sense ends directly.
    ``source`` (c, k): a unit current source across that cell, from its row node into its
    column node (into the sense end itself when R_w = 0)."""
    n_c, n_k = g.shape
    row = np.arange(n_c * n_k).reshape(n_c, n_k)
    col = n_c * n_k + row
    n = n_c * n_k * (2 if R_w > 0 else 1)
    K, rhs = np.zeros((n, n)), np.zeros(n)

    def link(a, b, G):
        K[a, a] += G
        K[b, b] += G
        K[a, b] -= G
        K[b, a] -= G

    def tie(a, G, v):
        K[a, a] += G
        rhs[a] += G * v

    for c in range(n_c):
        tie(row[c, 0], 1 / R_row, V[c])
        for k in range(n_k):
            if k + 1 < n_k:
                link(row[c, k], row[c, k + 1], 1 / R_row)
            if R_w > 0:
                link(row[c, k], col[c, k], g[c, k])
            else:
                tie(row[c, k], g[c, k], V_sense[k])
    if R_w > 0:
        for k in range(n_k):
            for c in range(n_c - 1):
                link(col[c, k], col[c + 1, k], 1 / R_w)
            tie(col[-1, k], 1 / R_w, V_sense[k])
    if source is not None:
        rhs[row[source]] -= 1.0
        if R_w > 0:
            rhs[col[source]] += 1.0
    u = np.linalg.solve(K, rhs)
    sense = (u[col[-1]] - V_sense) / R_w if R_w > 0 else (g * (u[row] - V_sense)).sum(0)
    if source is not None and R_w == 0:
        sense[source[1]] += 1.0
    return sense, (V - u[row[:, 0]]) / R_row


@pytest.mark.parametrize("R_w, R_row", [(50.0, 30.0), (0.0, 40.0), (3e3, 1e3)])
def test_mesh_against_an_independent_nodal_solve(R_w, R_row):
    """I = T V + S V₋ and the drivers' currents Y V − Tᵀ V₋ against the dense nodal solve of a
    9 × 5 tile (one cell at 0 S), rows solved in chunks; S symmetric with S 1 = −T 1."""
    gen = np.random.default_rng(0)
    g = gen.uniform(0, 25e-6, (9, 5))
    g[0, 1] = 0.0
    V, V_sense = gen.normal(size=9), gen.normal(size=5) * 0.1
    T, S, Y = (m.numpy() for m in mesh_ports(torch.tensor(g), R_w, R_row, drivers=True,
                                                 chunk=4)[:3])
    sense, driven = nodal_mesh(g, R_w, R_row, V, V_sense)
    assert np.abs(T @ V + S @ V_sense - sense).max() <= 1e-12 * np.abs(sense).max()
    assert np.abs(Y @ V - T.T @ V_sense - driven).max() <= 1e-12 * np.abs(driven).max()
    assert np.abs(S - S.T).max() <= 1e-15 * np.abs(S).max()
    assert np.abs(S.sum(1) + T.sum(1)).max() <= 1e-12 * T.sum(1).max()


def test_read_noise_gain_of_a_ladder_against_a_nodal_injection():
    """h_c, the share of a current injected at cell c's column node that reaches the sense end
    (rows and sense end at 0 V), against the dense nodal solve of the ladder with that unit
    injection; T = h ∘ g (the same solve); h = 1 without wire resistance."""
    gen = torch.Generator().manual_seed(5)
    g = torch.rand(3, 17, dtype=torch.float64, generator=gen) * 25e-6
    g[1, 4] = 0.0
    R_w = 300.0
    h = ladder_gain(g, R_w)
    for k in range(3):
        n, G = 17, 1.0 / R_w
        K = np.diag(g[k].numpy().copy())
        for c in range(n):
            K[c, c] += G
            if c + 1 < n:
                K[c + 1, c + 1] += G
                K[c, c + 1] -= G
                K[c + 1, c] -= G
        for c in range(n):
            u = np.linalg.solve(K, np.eye(n)[c])
            assert abs(float(h[k, c]) - G * u[-1]) <= 1e-12
    assert torch.equal(ladder_transfer(g, R_w), h * g)
    assert float(h.max()) < 1 and float(h[:, -1].min()) > float(h[:, 0].max())
    assert torch.equal(ladder_gain(g, 0.0), torch.ones_like(g))


@pytest.mark.parametrize("R_w, R_row", [(50.0, 30.0), (0.0, 40.0), (3e3, 1e3)])
def test_read_noise_gain_of_a_mesh_against_a_nodal_injection(R_w, R_row):
    """On a mesh h of cell (c, k) is what a unit current source across the cell (row node to
    column node) delivers into sense end k: against the dense nodal solve for every cell of a
    9 × 5 tile (one cell at 0 S), rows in chunks of 4; asking for h leaves T and S as they
    were. Within a tile the rest of the source's current reaches the other columns (through
    the row wire) and the row's driver; the per-column read-noise source keeps h, the column's
    own share."""
    gen = np.random.default_rng(0)
    g = gen.uniform(0, 25e-6, (9, 5))
    g[0, 1] = 0.0
    ports = mesh_ports(torch.tensor(g), R_w, R_row, gains=True, chunk=4)
    plain = mesh_ports(torch.tensor(g), R_w, R_row)
    assert torch.equal(ports.T, plain.T) and torch.equal(ports.S, plain.S) and plain.h is None
    zero_v, zero_s = np.zeros(9), np.zeros(5)
    for c in range(9):
        for k in range(5):
            sense, _ = nodal_mesh(g, R_w, R_row, zero_v, zero_s, source=(c, k))
            assert abs(float(ports.h[c, k]) - sense[k]) <= 1e-12, (c, k)


def test_row_wires_alone_are_the_ladder_transposed():
    """With ideal column wires each row is a 1-D ladder from its driver: T[:, c] is the column
    ladder's transfer with the cell order reversed (reciprocity), exactly."""
    g = torch.rand(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 25e-6
    T, S, _, _ = mesh_ports(g, 0.0, 75.0)
    ladder = ladder_transfer(g.flip(-1), 75.0).flip(-1)          # (n_c, n_k)
    assert torch.allclose(T, ladder.T, rtol=1e-13, atol=0)
    assert float((S.sum(1) + T.sum(1)).abs().max()) <= 1e-13 * float(T.sum(1).max())


def test_mesh_ir_drop_against_the_textbook_estimate():
    """A 40 × 24 tile of equal cells at one voltage: each wire's first-order drop 0.5 % (the
    1-D formula of each), their sum 1 %; the exact mesh agrees to its second order."""
    g, n_c, n_k = 5e-6, 40, 24
    R_w = 0.005 / (g * (n_c + 1) * (2 * n_c + 1) / 6)
    R_row = 0.005 / (g * (n_k + 1) * (2 * n_k + 1) / 6)
    T, _, _, _ = mesh_ports(torch.full((n_c, n_k), g, dtype=torch.float64), R_w, R_row)
    drop = 1 - float(T.sum()) / (n_c * n_k * g)
    estimate = ir_drop_estimate(g, R_w, n_c) + ir_drop_estimate(g, R_row, n_k)
    assert estimate == pytest.approx(0.01)
    assert drop == pytest.approx(0.01, rel=0.02) and drop < 0.01


def test_wires_are_solved_once_per_realisation_and_never_stale(make_net, monkeypatch):
    """One process solves a realisation's meshes once: the emulation, a second emulation, the
    netlist, a deployment's view of the same devices (a stack of the realisation) and the
    realisation without its read-noise process reuse the solution. A conductance changed in
    place, a new realisation or other wires solve again, and give the fresh answer. The
    energy's tile ports, solved first, serve the emulation with the same numbers."""
    calls = []
    solve = wires.mesh_ports

    def counted(*args, **kwargs):
        calls.append(1)
        return solve(*args, **kwargs)

    monkeypatch.setattr(wires, "mesh_ports", counted)
    monkeypatch.setattr(wires, "_solved", OrderedDict())
    spec = wired(200.0, 150.0, tile=8)
    real = realise_network(make_net(), spec, seed=4, v_scale=0.5)
    first = wired_layers(real)
    tiles_per_realisation = len(calls)
    q_tiles = [2, 2, 1]                 # Q: 5 rows, 10, 10 and 5 columns in tiles of 8
    assert tiles_per_realisation == sum(len(w.tiles_W) for w in first) + sum(q_tiles)
    HardwareModel(real, ControllerParams())
    HardwareModel(real, ControllerParams())
    write_crossbar_netlist(real, ControllerParams(), np.zeros(15), np.zeros(5))
    views = stack_of(real).realisation(0)
    for again in (wired_layers(views), wired_layers(real.without_read_process())):
        assert all(a.layer.G_pos.data_ptr() == b.layer.G_pos.data_ptr() and a.S_W is b.S_W
                   for a, b in zip(first, again))                # the same solution
    assert len(calls) == tiles_per_realisation
    fresh = realise_network(make_net(), spec, seed=4, v_scale=0.5)      # equal, not the same
    assert torch.equal(wired_layers(fresh)[0].S_W, first[0].S_W)
    assert len(calls) == 2 * tiles_per_realisation
    with torch.no_grad():
        real.layers[1].G_pos.mul_(1.5)                 # new weights written in place
    changed = wired_layers(real)
    assert len(calls) == 2 * tiles_per_realisation + len(first[1].tiles_W) + q_tiles[1]
    assert not torch.equal(changed[1].layer.G_pos, first[1].layer.G_pos)
    assert changed[0].S_W is first[0].S_W
    other = dataclasses.replace(real, spec=wired(200.0, 300.0, tile=8))
    assert not torch.equal(wired_layers(other, 1)[0].S_W, changed[0].S_W)
    # the energy's tiles (with the drivers' admittance) solved first serve the emulation too
    real = realise_network(make_net(), spec, seed=6, v_scale=0.5)
    for lr in real.layers:
        driver_ports(lr, spec)
    before = len(calls)
    shared = wired_layers(real)
    assert len(calls) == before
    monkeypatch.setattr(wires, "_solved", OrderedDict())
    for a, b in zip(shared, wired_layers(real)):
        assert torch.equal(a.layer.G_pos, b.layer.G_pos) and torch.equal(a.S_W, b.S_W)
        assert torch.equal(a.layer.GQ_neg, b.layer.GQ_neg) and torch.equal(a.S_Q, b.S_Q)


@needs_ngspice
def test_mesh_netlist_op_against_the_port_equations():
    """A 4-3 layer in tiles of 2 rows × 2 columns (W: 3 row tiles, Q: 2; each 1 or 2 columns)
    with 300 Ω column and 500 Ω row segments, every row written literally: at the operating
    point each sense source's current equals its tile's T V + S V₋ with the row voltages and
    virtual grounds ngspice computed (KCL through the mesh); the layer's Norton equivalent
    (``sum_inputs``: the coupling resistors 1/S_kk') gives the same operating point."""
    net = DFCNetwork([4, 3], ["linear"], dtype=torch.float64,
                     generator=torch.Generator().manual_seed(2), feedback_init="weight_product")
    real = realise_network(net, wired(300.0, 500.0, tile=2), seed=3, v_scale=0.5)
    x = np.array([0.7, -0.4, 0.2, 0.9])
    text = write_crossbar_netlist(real, ControllerParams(), x, phase="op",
                                  options=SpiceOptions(reltol=1e-9, sum_inputs=False))
    assert "RWr_l1_t0_wr0_0 in_0 " not in text and "RWr_l1_t0_wr0_0 inn_0 " in text
    names = [f"l1_vg_{k}" for k in range(3)] + [f"ctl_u_{m}" for m in range(3)]
    senses = [f"vs{kind}1_{k}_t{a}#branch" for kind, n in (("w", 3), ("q", 2))
              for k in range(3) for a in range(n)]
    data = {k: float(v[0]) for k, v in run_netlist(text, names + senses).items()}
    vg = np.array([data[f"l1_vg_{k}"] for k in range(3)])
    u = np.array([data[f"ctl_u_{m}"] for m in range(3)])
    V = {"w": np.concatenate([np.stack([-x, x], 1).reshape(-1) * 0.5, [-0.5, 0.5]]),
         "q": np.stack([-u, u], 1).reshape(-1)}
    for kind, cells in zip("wq", column_cells(real.layers[0])):
        for a, rows in enumerate(tiles(cells.shape[1], 2)):
            for cols in column_tiles(3, 2):
                T, S, _, _ = mesh_ports(cells[cols, rows].T, 300.0, 500.0)
                want = T.numpy() @ V[kind][rows] + S.numpy() @ vg[cols]
                got = [data[f"vs{kind}1_{k}_t{a}#branch"] for k in range(cols.start, cols.stop)]
                assert np.abs(np.array(got) - want).max() <= 1e-9 * np.abs(want).max()
    norton = write_crossbar_netlist(real, ControllerParams(), x, phase="op",
                                    options=SpiceOptions(reltol=1e-9))
    assert "RWr_" not in norton and "RWm1_0_1_t0 " in norton and "RQr_" in norton
    summed = {k: float(v[0]) for k, v in run_netlist(norton, names + senses).items()}
    for name in names + senses:
        assert summed[name] == pytest.approx(data[name], rel=1e-8, abs=1e-15), name


@needs_ngspice
def test_one_column_with_wires_in_ngspice():
    """The 2-1 column (2 input rows and the bias row: 6 cells, Q: 2 cells) at rest, written as
    an explicit ladder and as its Norton equivalent, against the emulation."""
    real = realise_network(one_column(), wired(5e3), seed=1, v_scale=0.5)
    x = np.array([0.6, -0.9])
    soma = float(HardwareModel(real, ControllerParams()).feedforward(
        torch.tensor(x)[None])["soma"][0, 0]) * 0.5
    ideal = realise_network(one_column(), wired(0.0), seed=1, v_scale=0.5)
    free = float(HardwareModel(ideal, ControllerParams()).feedforward(
        torch.tensor(x)[None])["soma"][0, 0]) * 0.5
    assert abs(soma - free) > 1e-2 * abs(free)            # the IR drop shows
    for sum_inputs in (False, True):
        options = SpiceOptions(reltol=1e-6, sum_inputs=sum_inputs)
        text = write_crossbar_netlist(real, ControllerParams(), x, phase="op", options=options)
        assert ("RWs_l1_t0_w_0_5 " in text) != sum_inputs
        assert float(run_netlist(text, ["l1_soma_0"])["l1_soma_0"][0]) == \
            pytest.approx(soma, rel=1e-6)


def wake_against_circuit(net, spec, reference_spec, options) -> list:
    """The wake phase of ``net`` realised on ``spec`` (seed 2, 0.5 V per unit), emulated and in
    ngspice (``options``): every signal agrees to 1e-4 of its range. Returns, per signal, how
    far the emulation moved from the same devices on ``reference_spec``, in units of its
    range."""
    params = ControllerParams()
    real = realise_network(net, spec, seed=2, v_scale=0.5)
    model = HardwareModel(real, params)
    reference = HardwareModel(realise_network(net, reference_spec, seed=2, v_scale=0.5), params)
    x = torch.rand(1, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        r_star = model.feedforward(x)["rate"][:, -5:] + 0.05
    times = torch.linspace(0, 3, 61, dtype=torch.float64)
    emu = simulate_hardware_wake(model, x, r_star, 3.0, times, 1e-10, 1e-10)
    ref = simulate_hardware_wake(reference, x, r_star, 3.0, times, 1e-10, 1e-10)
    circ = simulate_hardware_circuit(real, params, x[0], r_star[0], 3.0, times, options=options)
    moved = []
    for name in ("soma", "basal", "apical", "rate"):
        for a, b, c in zip(getattr(emu, name), getattr(circ, name), getattr(ref, name)):
            span = float(a.max() - a.min())
            assert float((a - b).abs().max()) <= 1e-4 * span, name
            moved.append(float((a - c).abs().max()) / span)
    assert float((emu.u - circ.u).abs().max()) <= 1e-4 * float(emu.u.max() - emu.u.min())
    return moved


@needs_ngspice
def test_emulation_and_circuit_agree_with_large_wire_resistance(make_net):
    """200 Ω per cell moves every signal of the 15-10-10-5 net by 15-106 % of its range during
    the wake phase; emulation and ngspice still agree to 1e-4 of each range (tight tolerance)."""
    moved = wake_against_circuit(make_net(), wired(200.0), wired(0.0), TIGHT)
    assert min(moved) >= 0.1


@needs_ngspice
@pytest.mark.parametrize("row_wire_resistance", [0.0, pytest.param(20.0, marks=pytest.mark.slow)])
def test_energy_with_wires_model_against_circuit(make_net, row_wire_resistance):
    """An inference on pcm with 20 Ω per cell (and per row segment: each tile a mesh): the
    model's energy, the wire segments' power included, matches the circuit's; the wires' share
    is counted (the crossbar term differs from the same devices without wires)."""
    net = make_net()
    base = load_spec("pcm")
    spec = dataclasses.replace(base, synapse=dataclasses.replace(
        base.synapse, wire_resistance=20.0, row_wire_resistance=row_wire_resistance))
    real = realise_network(net, spec, seed=0, v_scale=0.5)
    x, times = np.linspace(-0.8, 0.9, 15), np.linspace(0, 3, 301)
    circ, _ = circuit_energy(real, ControllerParams(), x, None, 3.0, times)
    model = model_energy(real, ControllerParams(), x, None, 3.0, times)
    for name in ("total", "crossbar", "amplifiers", "drivers", "controller"):
        assert getattr(model, name) == pytest.approx(getattr(circ, name), rel=1e-3), name
    free = model_energy(realise_network(net, base, seed=0, v_scale=0.5), ControllerParams(), x,
                        None, 3.0, times)
    assert abs(model.crossbar / free.crossbar - 1) > 1e-3


@needs_ngspice
@pytest.mark.slow
def test_emulation_and_circuit_agree_on_a_mesh(make_net):
    """200 Ω per column and per row segment on 8 × 8 tiles (the 15-10-10-5 net's layers span
    two column tiles and two or three row tiles): the row wires move the wake phase by
    1.1–7.7 % of each signal's range beyond the column wires alone, while emulation and ngspice
    (every row wire written) agree to 1e-4 of it."""
    moved = wake_against_circuit(make_net(), wired(200.0, 200.0, tile=8), wired(200.0, tile=8),
                                 SpiceOptions(reltol=1e-6, sum_inputs=False))
    assert min(moved) >= 0.01 and max(moved) >= 0.05


@needs_ngspice
@pytest.mark.slow
def test_toy_run_on_a_pcm_mesh_validates_and_a_changed_row_segment_fails(
        run_dir, tmp_path, monkeypatch):  # noqa: F811
    """dfc-validate on pcm with 50 Ω column and row segments on 8 × 8 tiles: circuit and
    emulation agree within 1e-3; the netlist with one row-wire segment of W_2 (the first, from
    the driver of row −r_0 of layer 1) made 1000 × larger fails, naming the signal (basal_2
    of a neuron of the segment's column tile)."""
    spec = tmp_path / "pcm-mesh-50.toml"
    spec.write_text('extends = "pcm"\ncrossbar_size = 8\n[synapse]\nwire_resistance = 50.0\n'
                    'row_wire_resistance = 50.0\n')
    settings = ValidationSettings(points=201, hardware=str(spec), scaling=Scaling(v_scale=0.5))
    samples = load_samples(run_dir, 1, settings)
    good = validate_samples(samples, settings, workers=1, progress=False)
    r = good.results[0]
    assert good.passed, r.failures
    assert r.max_error <= 1e-3
    write = crossbar.write_crossbar_netlist

    def broken(*args, **kwargs):
        text = write(*args, **kwargs)
        out, n = re.subn(r"^(RWr_l2_t0_wr0_0 \S+ \S+) (\S+)$",
                         lambda m: f"{m.group(1)} {float(m.group(2)) * 1e3!r}", text, flags=re.M)
        assert n == 1
        return out

    monkeypatch.setattr(crossbar, "write_crossbar_netlist", broken)
    bad = validate_samples(samples, settings, workers=1, progress=False)
    r = bad.results[0]
    assert not bad.passed
    assert r.diverged[0] == "basal2" and r.diverged[1].neuron < 8      # its column tile
