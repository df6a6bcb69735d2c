"""Energy and latency of the realised circuit (dfc_analog.circuit.energy): the read-outs
against ngspice's own power of each element and against C V² for an RC stage, and the model's
estimate against the circuit's."""
import re

import numpy as np
import pytest
import torch

from dfc_analog.circuit.crossbar import saved_vectors, write_crossbar_netlist
from dfc_analog.circuit.energy import (_integrate, circuit_energy, crossbar_power,
                                       energy_by_layers, forward_macs, model_energy,
                                       settling_time)
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.circuit.simulate import (hardware_trajectory, run_netlist,
                                         simulate_inference_by_layers)
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.solvers.wake import simulate_hardware_wake

from tests.test_hardware_circuit import SPEC, TIGHT, one_column
from tests.test_validate import needs_ngspice


@needs_ngspice
def test_rc_stage_energy_is_c_v_squared():
    """A step of V into R–C: the source delivers C V², the resistor dissipates C V² / 2."""
    C, R, V = 1e-9, 1e3, 0.8
    deck = "\n".join(["* RC stage", f"V1 a 0 PWL(0 0 1e-9 {V!r})", f"R1 a b {R!r}",
                      f"C1 b 0 {C!r}", ".options reltol=1e-4", ".save v(a) i(v1) @r1[p]",
                      f".tran 1e-8 {20 * R * C!r}", ".end", ""])
    data = run_netlist(deck, ["a", "v1#branch", "@r1[p]"])
    t = data["time"]
    assert _integrate(t, -data["a"] * data["v1#branch"]) == pytest.approx(C * V * V, rel=0.01)
    assert _integrate(t, data["@r1[p]"]) == pytest.approx(0.5 * C * V * V, rel=0.01)


@needs_ngspice
@pytest.mark.parametrize("wire_resistance, row_wire_resistance",
                         [(0.0, 0.0), (2e3, 0.0), (2e3, 1e3)])
def test_crossbar_dissipation_equals_the_resistors_power(wire_resistance, row_wire_resistance):
    """The crossbar term read off the node voltages equals ngspice's Σ ∫ @R[p] over every
    device resistor (the inputs written as one resistor per device), and with wire resistance
    over the devices and every wire segment of the column ladders (and of the row wires on a
    mesh, read off its port admittances)."""
    net = one_column()
    spec = {**SPEC, "synapse": {**SPEC["synapse"], "wire_resistance": wire_resistance,
                                "row_wire_resistance": row_wire_resistance}}
    real = realise_network(net, HardwareSpec.from_dict(spec), seed=4, v_scale=0.5)
    x, times = np.array([0.7, -0.4]), np.linspace(0, 2, 201)
    options = SpiceOptions(reltol=1e-6, sum_inputs=False)
    text = write_crossbar_netlist(real, ControllerParams(), x, None, "inference", 2.0, times,
                                  1.0, options)
    devices = re.findall(r"^(R[WQ]\S+) ", text, re.M)
    assert len(devices) >= (4 if wire_resistance == 0 else 4 + 6 + 2) + \
        (6 + 2 if row_wire_resistance > 0 else 0)
    powers = [f"@{d.lower()}[p]" for d in devices]
    text = text.replace("\n.tran", "\n.save " + " ".join(powers) + "\n.tran")
    data = run_netlist(text, saved_vectors(real) + powers)
    on = data["time"] >= 1e-6                    # from the input step at t_on = 1 τ_u on
    data = {k: v[on] for k, v in data.items()}
    t = data["time"]
    measured = _integrate(t, sum(data[p] for p in powers))
    xbar, _ = crossbar_power(real, x, [data["l1_vg_0"][:, None]], [data["l1_rate_0"][:, None]],
                             [data["l1_raten_0"][:, None]],
                             data["ctl_u_0"][:, None] / real.v_scale)
    assert _integrate(t, xbar) == pytest.approx(measured, rel=1e-9)


def test_settling_time_of_an_exponential():
    t = np.linspace(0, 10, 10001)
    out = (1 - np.exp(-t))[:, None]
    e = np.exp(-10.0)       # within 1 % of the change over the window, of the final value
    assert settling_time(t, out) == pytest.approx(-np.log(0.01 * (1 - e) + e), abs=1.1e-3)
    assert settling_time(t[:3000], out[:3000]) is None


@needs_ngspice
def test_model_energy_and_settling_match_the_circuit(make_net):
    net = make_net()
    real = realise_network(net, load_spec("pcm"), seed=0, v_scale=0.5)
    x = np.linspace(-0.8, 0.9, 15)
    times = np.linspace(0, 3, 301)
    circ, _ = circuit_energy(real, ControllerParams(), x, None, 3.0, times)
    model = model_energy(real, ControllerParams(), x, None, 3.0, times)
    assert circ.macs == model.macs == forward_macs(real) == 15 * 10 + 10 * 10 + 10 * 5
    for name in ("total", "crossbar", "amplifiers", "drivers", "quiescent", "controller"):
        assert getattr(model, name) == pytest.approx(getattr(circ, name), rel=1e-3), name
    # the settling times agree to the output grid (0.01 τ_u), and so the energies until then
    assert model.settling_time == pytest.approx(circ.settling_time, abs=1.01e-8)
    assert model.per_inference == pytest.approx(circ.per_inference, rel=1e-2)
    n_amp = 3 * 25
    assert circ.quiescent == pytest.approx(n_amp * 5e-6 * 3.0 * 3e-6)
    assert circ.crossbar > 0 and circ.amplifiers > circ.quiescent
    # the controller is off (reset closed): its 4 n_L op-amps draw I_q, and the error stage,
    # whose output follows −r_L with the target off, its output current
    assert circ.controller > 4 * 5 * 5e-6 * 3.0 * 3e-6


@needs_ngspice
def test_wake_phase_energy_of_model_and_circuit(make_net):
    """The learning phase: from the feed-forward state, controller on at t = 0."""
    net = make_net()
    real = realise_network(net, load_spec("pcm"), seed=0, v_scale=0.5)
    x = np.linspace(-0.8, 0.9, 15)
    with torch.no_grad():
        r_L = HardwareModel(real, ControllerParams()).feedforward(torch.tensor(x)[None])["rate"]
    r_star = r_L[0, -5:].numpy() + 0.05
    times = np.linspace(0, 5, 501)
    circ, _ = circuit_energy(real, ControllerParams(), x, r_star, 5.0, times)
    model = model_energy(real, ControllerParams(), x, r_star, 5.0, times)
    for name in ("total", "crossbar", "amplifiers", "drivers", "controller"):
        assert getattr(model, name) == pytest.approx(getattr(circ, name), rel=1e-3), name
    assert circ.controller > 1.01 * 4 * 5 * 5e-6 * 3.0 * 5e-6      # the controller at work
    assert (model.settling_time is None) == (circ.settling_time is None)   # u_int still moves


@needs_ngspice
@pytest.mark.slow
def test_bench_small_network_meets_the_goals(capsys):
    """bench/hardware.py on 15-10-10-5: emulation error ≤ 1e-3, model energy within 10 %."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from hardware import main
    main(["--small-only", "--t-end", "2"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(item.split("=") for item in line.split()[1:])
    assert line.startswith("RESULT ")
    assert float(values["emul_err"]) <= 1e-3
    assert abs(float(values["energy_model_vs_circuit"]) - 1) < 0.1


@needs_ngspice
@pytest.mark.parametrize("preset", ["pcm", "pcm-wires", "pcm-mesh"])
def test_inference_by_layers_is_the_whole_circuit(make_net, preset):
    """One ngspice run per layer (simulate_inference_by_layers, energy_by_layers) against the
    whole circuit's run at reltol 1e-6: every signal to 1e-4 of its range (the interpolation
    between a run's time points, measured 2e-5) and every energy term to 1e-5 (measured 5e-7),
    once the loads that a run lacks are added (layer k's W on layer k−1's row stages, the other
    layers' Q on the controller's summers): the runs' own supplies miss them by far more. The
    same with column wires and with meshes. The emulation's inference (from rest) agrees with
    the runs as with the whole circuit."""
    real = realise_network(make_net(), load_spec(preset), seed=2, v_scale=0.5)
    params = ControllerParams(tau_v=0.2, alpha=0.001389, k_p=2.0, leak="total")
    x = np.random.default_rng(1).uniform(0, 1, 15)
    times = np.linspace(0, 3, 301)
    whole, data = circuit_energy(real, params, x, None, 3.0, times, options=TIGHT)
    traj, runs = simulate_inference_by_layers(real, params, x, 3.0, times, options=TIGHT)
    assert len(runs) == 3 and "l2_rate_0" not in runs[0] and "l1_vp_0" in runs[0]
    parts = energy_by_layers(real, x, runs, 3.0)
    for name in ("total", "crossbar", "amplifiers", "drivers", "quiescent", "controller"):
        assert getattr(parts, name) == pytest.approx(getattr(whole, name), rel=1e-5), name
    assert parts.settling_time == pytest.approx(whole.settling_time, abs=1.01e-8)
    sup = real.spec.supply
    own = sum(_integrate(run["time"][run["time"] >= 1e-6],
                         -(sup.vdd * run["vdd#branch"] + sup.vss * run["vss#branch"])
                         [run["time"] >= 1e-6]) for run in runs)
    assert abs(own / whole.amplifiers - 1) > 0.01              # measured 8 %
    last = runs[-1]["time"] >= 1e-6
    summers = _integrate(runs[-1]["time"][last], -(sup.vdd * runs[-1]["vddc#branch"] +
                                                   sup.vss * runs[-1]["vssc#branch"])[last])
    assert abs(summers / whole.controller - 1) > 1e-3           # measured 5.5e-3
    with torch.no_grad():
        emu = simulate_hardware_wake(HardwareModel(real, params), torch.tensor(x)[None], None,
                                     3.0, torch.tensor(times), 1e-10, 1e-10, from_rest=True)
    circuit = hardware_trajectory(real, data, times, 1e-6, 1.0)
    for name in ("soma", "basal", "apical", "rate"):
        for a, b, c in zip(getattr(circuit, name), getattr(traj, name), getattr(emu, name)):
            scale = float(a.max() - a.min())
            assert float((a - b).abs().max()) <= 1e-4 * scale, name
            assert float((c - b).abs().max()) <= 1e-4 * scale, name


def test_an_inference_from_rest_has_no_target(make_net):
    model = HardwareModel(realise_network(make_net(), load_spec("pcm"), 2, 0.5),
                          ControllerParams())
    with pytest.raises(ConfigError, match="controller off: no target"):
        simulate_hardware_wake(model, torch.zeros(1, 15, dtype=torch.float64),
                               torch.zeros(1, 5, dtype=torch.float64), 1.0, None,
                               from_rest=True)


@needs_ngspice
@pytest.mark.slow
def test_energy_report_by_layers(tmp_path, capsys):
    """emulation/energy_report.py --by-layers: every preset's circuit from one ngspice run per
    layer, within 1e-3 of the emulation's inference and the model's energy within 10 % of it."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emulation"))
    from energy_report import main
    assert main(["--by-layers", "--seeds", "2", "--out", str(tmp_path)]) == 0
    rows = [line.split("|")[1:-1] for line in (tmp_path / "energy.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in
            ("pcm", "rram", "4bit", "8bit")]
    assert len(rows) == 4
    assert all(float(row[1].split()[0]) <= 1e-3 for row in rows), rows   # circuit vs emulation
    assert all(abs(float(row[5]) - 1) < 0.1 for row in rows), rows
    assert all((tmp_path / f"inference_{row[0].strip()}.png").stat().st_size > 0 for row in rows)
