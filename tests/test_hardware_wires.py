"""Wire resistance of the crossbar columns (dfc_analog.hardware.wires): the ladder against its
hand solution and an independent nodal solve, the IR drop against the textbook estimate, and the
emulation against the ladder netlist in ngspice, where the wires move every signal by tens of
per cent while the two simulators agree to ~1e-5. Zero wire resistance changes nothing."""
import dataclasses

import numpy as np
import pytest
import torch

from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.circuit.energy import circuit_energy, model_energy
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.circuit.simulate import run_netlist, simulate_hardware_circuit
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, realise_network
from dfc_analog.hardware.wires import (ir_drop_estimate, ladder_nodes, ladder_transfer,
                                       transfer_layers)
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.solvers.wake import simulate_hardware_wake

from tests.test_hardware_circuit import SPEC, TIGHT, one_column
from tests.test_validate import needs_ngspice


def wired(R_w: float) -> HardwareSpec:
    return HardwareSpec.from_dict({**SPEC, "synapse": {**SPEC["synapse"],
                                                        "wire_resistance": R_w}})


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
    """Every preset but pcm-wires has ideal wires: the emulation reads the realisation's own
    conductances (the same objects) and the netlist has no wire segment."""
    for name in ("ideal", "pcm", "rram", "4bit", "8bit"):
        assert load_spec(name).synapse.wire_resistance == 0.0
    real = realise_network(make_net(), load_spec("pcm"), seed=1, v_scale=0.5)
    assert transfer_layers(real) is real.layers
    text = write_crossbar_netlist(real, ControllerParams(), np.zeros(15), np.zeros(5))
    assert "RWs_" not in text and "RQs_" not in text and "IWB1_" not in text
    with pytest.raises(ConfigError, match="wire_resistance must be a non-negative number"):
        HardwareSpec.from_dict({"synapse": {"wire_resistance": -1.0}})


def test_preset_with_wires_is_pcm_plus_the_wires():
    pcm, wires = load_spec("pcm"), load_spec("pcm-wires")
    assert wires.synapse.wire_resistance > 0 and not wires.is_ideal
    assert dataclasses.replace(wires.synapse, wire_resistance=0.0) == pcm.synapse
    assert wires.amplifier == pcm.amplifier and wires.crossbar_size == pcm.crossbar_size


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


@needs_ngspice
def test_emulation_and_circuit_agree_with_large_wire_resistance(make_net):
    """200 Ω per cell moves every signal of the 15-10-10-5 net by 15-106 % of its range during
    the wake phase; emulation and ngspice still agree to 1e-4 of each range (tight tolerance)."""
    net = make_net()
    params = ControllerParams()
    real = realise_network(net, wired(200.0), seed=2, v_scale=0.5)
    model = HardwareModel(real, params)
    free = HardwareModel(realise_network(net, wired(0.0), seed=2, v_scale=0.5), params)
    x = torch.rand(1, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        r_star = model.feedforward(x)["rate"][:, -5:] + 0.05
    times = torch.linspace(0, 3, 61, dtype=torch.float64)
    emu = simulate_hardware_wake(model, x, r_star, 3.0, times, 1e-10, 1e-10)
    ref = simulate_hardware_wake(free, x, r_star, 3.0, times, 1e-10, 1e-10)
    circ = simulate_hardware_circuit(real, params, x[0], r_star[0], 3.0, times, options=TIGHT)
    for name in ("soma", "basal", "apical", "rate"):
        for a, b, c in zip(getattr(emu, name), getattr(circ, name), getattr(ref, name)):
            span = float(a.max() - a.min())
            assert float((a - b).abs().max()) <= 1e-4 * span, name
            assert float((a - c).abs().max()) >= 0.1 * span, name
    assert float((emu.u - circ.u).abs().max()) <= 1e-4 * float(emu.u.max() - emu.u.min())


@needs_ngspice
def test_energy_with_wires_model_against_circuit(make_net):
    """An inference on pcm with 20 Ω per cell: the model's energy, the wire segments' power
    included, matches the circuit's; the wires' share is counted (the crossbar term differs from
    the same devices without wires)."""
    net = make_net()
    base = load_spec("pcm")
    spec = dataclasses.replace(base, synapse=dataclasses.replace(base.synapse,
                                                                 wire_resistance=20.0))
    real = realise_network(net, spec, seed=0, v_scale=0.5)
    x, times = np.linspace(-0.8, 0.9, 15), np.linspace(0, 3, 301)
    circ, _ = circuit_energy(real, ControllerParams(), x, None, 3.0, times)
    model = model_energy(real, ControllerParams(), x, None, 3.0, times)
    for name in ("total", "crossbar", "amplifiers", "drivers", "controller"):
        assert getattr(model, name) == pytest.approx(getattr(circ, name), rel=1e-3), name
    free = model_energy(realise_network(net, base, seed=0, v_scale=0.5), ControllerParams(), x,
                        None, 3.0, times)
    assert abs(model.crossbar / free.crossbar - 1) > 1e-3
