"""The realised circuit in both simulators: the torch emulation (dfc_analog.model.hardware) and
the crossbar netlist in ngspice (dfc_analog.circuit.crossbar).

Closed forms: a crossbar column into its soma stage with a finite-gain op-amp (an independent
solve of the node equations), the op-amp macromodel's DC gain and pole (ngspice AC analysis).
The two simulators hold the identical device draws and agree to ngspice's tolerance; on the toy
run `dfc-validate --hardware pcm` passes while the hardware visibly departs from the ideal model,
and a changed device fails, naming its signal. The `ideal` spec changes nothing.
"""
import copy
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.circuit.graph import Scaling
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.circuit.simulate import run_netlist, simulate_hardware_circuit
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation.compare import (ValidationSettings, load_samples,
                                           spice_hardware_circuit, validate_samples)

from tests.test_netlist import make_run_dir, run_cli
from tests.test_validate import model_circuit, needs_ngspice, run_dir  # noqa: F401 (fixture)

TIGHT = SpiceOptions(reltol=1e-6)
SPEC = {"synapse": {"g_min": 1e-6, "g_max": 25e-6},
        "amplifier": {"gain": 1e3, "gbw": 1e7, "offset": 2e-3, "rail": 1.4},
        "activation": {"gain_mismatch": 0.05, "offset_mismatch": 5e-3}}


def one_column(W=(0.8, -0.3), b=0.2):
    """A 2-1 linear network: one crossbar column (2 input rows and the bias row)."""
    net = DFCNetwork([2, 1], ["linear"], dtype=torch.float64)
    with torch.no_grad():
        net.W[0].copy_(torch.tensor([W], dtype=torch.float64))
        net.b[0].fill_(b)
    return net


def test_column_with_finite_gain_against_the_node_equations():
    """Soma stage at rest: KCL at the virtual ground V₋ with G⁺ on −x, G⁻ on +x, the bias pair
    on ∓V_ref, the Q pair on ∓u (the controller at rest: its offsets' u_rest, tested in
    tests/test_hardware_controller.py) and R_f to the output n = A₀ (V_os − V₋), solved here as
    a 2x2 linear system; A₀ = 1e3 makes the gain error visible (≈ n_g / A₀)."""
    net = one_column()
    real = realise_network(net, HardwareSpec.from_dict(SPEC), seed=1, v_scale=0.5)
    lr, vs = real.layers[0], 0.5
    x = np.array([0.6, -0.9])
    rows_pos = np.concatenate([x * vs, [vs]])           # +x, +V_ref: the G⁻ rows
    G_pos = np.concatenate([lr.G_pos[0].numpy(), lr.Gb_pos.numpy()])
    G_neg = np.concatenate([lr.G_neg[0].numpy(), lr.Gb_neg.numpy()])
    G_Q = float(lr.GQ_pos.sum() + lr.GQ_neg.sum())
    G_f, A0, V_os = 1.0 / float(lr.R_f[0]), 1e3, float(lr.soma_offset[0])
    model = HardwareModel(real, ControllerParams())
    ff = model.feedforward(torch.tensor(x)[None])
    u = float(model.dynamics(torch.tensor(x)[None], None).signals(ff["state"])["u"][0, 0]) * vs
    I_Q = float(lr.GQ_neg[0, 0] - lr.GQ_pos[0, 0]) * u
    # unknowns (V₋, n): Σ G (V_row − V₋) + G_f (n − V₋) − G_Q V₋ = 0;  n + A₀ V₋ = A₀ V_os
    G_sum = G_pos.sum() + G_neg.sum() + G_Q + G_f
    A = np.array([[-G_sum, G_f], [A0, 1.0]])
    rhs = np.array([-(G_pos @ -rows_pos + G_neg @ rows_pos + I_Q), A0 * V_os])
    v_minus, n = np.linalg.solve(A, rhs)
    assert float(ff["soma"][0, 0]) * vs == pytest.approx(n, rel=1e-12)
    ideal = float(net.W[0][0].detach() @ torch.tensor(x) + net.b[0][0].detach()) * vs
    assert abs(n - ideal) > 1e-3                 # the finite gain and offset show
    if needs_ngspice.args[0]:
        return
    text = write_crossbar_netlist(real, ControllerParams(), x, phase="op", options=TIGHT)
    data = run_netlist(text, ["l1_soma_0", "l1_vg_0"])
    assert float(data["l1_soma_0"][0]) == pytest.approx(n, rel=1e-6)
    assert float(data["l1_vg_0"][0]) == pytest.approx(v_minus, rel=1e-5)


@needs_ngspice
def test_opamp_macromodel_dc_gain_and_pole():
    """Open loop, one pole: a 10 µV step gives A₀ (1 − e^{−t/τ_p}) with τ_p = A₀ / (2π gbw),
    i.e. DC gain A₀ and gain-bandwidth gbw."""
    spec = HardwareSpec.from_dict({"amplifier": {"gain": 2e4, "gbw": 5e6, "rail": 1.0}})
    real = realise_network(one_column(), spec, seed=0)
    text = write_crossbar_netlist(real, ControllerParams(), [0.1, 0.2], phase="op")
    subckt = re.search(r"^\.subckt dfc_opamp.*?^\.ends$", text, re.M | re.S).group(0)
    # the step response of the open loop: A₀ (1 − e^{−t/τ_p}), τ_p = A₀ / (2π gbw)
    tau_p = 2e4 / (2 * math.pi * 5e6)
    deck = "\n".join(["* open-loop step", subckt, "Vdd vdd 0 DC 1.5", "Vss vss 0 DC -1.5",
                      "Vin inp 0 PWL(0 0 1e-12 1e-5)", "X1 inp 0 out vdd vss dfc_opamp",
                      ".options reltol=1e-7", f".tran {tau_p / 100!r} {3 * tau_p!r} 0 "
                      f"{tau_p / 200!r}", ".end", ""])
    data = run_netlist(deck, ["out"])
    t, out = data["time"], data["out"]
    expected = 2e4 * 1e-5 * (1 - np.exp(-(t - 1e-12).clip(0) / tau_p))
    assert np.max(np.abs(out - expected)) < 1e-4 * 2e4 * 1e-5
    assert out[-1] == pytest.approx(2e4 * 1e-5 * (1 - math.exp(-3)), rel=1e-4)


def test_rails_that_clip_the_feed_forward_state_name_the_neurons(make_net):
    net = make_net()
    spec = HardwareSpec.from_dict({**SPEC, "amplifier": {**SPEC["amplifier"], "rail": 0.05}})
    model = HardwareModel(realise_network(net, spec, 0), ControllerParams())
    x = torch.linspace(-1, 1, 15, dtype=torch.float64)[None]
    with pytest.raises(ConfigError) as err:
        model.feedforward(x)
    text = str(err.value)
    assert re.search(r"rails \(±0.05 V\) clip the feed-forward state at the soma output of "
                     r"layer 1 neurons? [0-9, ]+", text) and text.endswith(".") and "\n" not in text


def test_ideal_amplifiers_are_refused_for_the_crossbar(make_net):
    spec = HardwareSpec.from_dict({"synapse": {"device": "pcm", "programming_noise": 1.0}})
    with pytest.raises(ConfigError, match="finite gain and gain-bandwidth"):
        HardwareModel(realise_network(make_net(), spec, 0), ControllerParams())


def test_same_seed_same_devices_in_torch_and_in_the_netlist(make_net):
    """Every value the netlist holds is the realisation's draw, to the last bit."""
    net = make_net()
    real = realise_network(net, load_spec("pcm"), seed=5, v_scale=0.5)
    text = write_crossbar_netlist(real, ControllerParams(), np.zeros(15), np.zeros(5), "wake")
    values = {m.group(1).lower(): float(m.group(2))
              for m in re.finditer(r"^(R\S+) \S+ \S+ (\S+)$", text, re.M)}
    offsets = {m.group(1).lower(): float(m.group(2))
               for m in re.finditer(r"^(X[spn]\S+) .* os=(\S+)$", text, re.M)}
    checked = 0
    for i, lr in enumerate(real.layers, start=1):
        for k in range(lr.G_pos.shape[0]):
            assert values[f"rf{i}_{k}"] == float(lr.R_f[k])
            assert offsets[f"xs{i}_{k}"] == float(lr.soma_offset[k])
            assert offsets[f"xp{i}_{k}"] == float(lr.rate_offset_pos[k])
            for m in range(5):
                G = float(lr.GQ_pos[k, m])
                if G > 0:
                    assert values[f"rq{i}_{k}_{m}"] == 1.0 / G
                    checked += 1
            if i > 1:
                for j in range(lr.G_pos.shape[1]):
                    for name, G in ((f"rw{i}_{k}_{j}", float(lr.G_pos[k, j])),
                                    (f"rwn{i}_{k}_{j}", float(lr.G_neg[k, j]))):
                        assert (name in values) == (G > 0)
                        if G > 0:
                            assert values[name] == 1.0 / G
                            checked += 1
    assert checked > 100
    again = write_crossbar_netlist(realise_network(net, load_spec("pcm"), seed=5, v_scale=0.5),
                                   ControllerParams(), np.zeros(15), np.zeros(5), "wake")
    assert again == text


@needs_ngspice
def test_emulation_and_circuit_agree_at_tight_tolerance(make_net):
    """reltol 1e-6: the two simulators of one realisation agree to ~1e-5 of each range, the
    controller's op-amp stages included."""
    net = make_net()
    params = ControllerParams()
    real = realise_network(net, HardwareSpec.from_dict(SPEC), seed=2, v_scale=0.5)
    model = HardwareModel(real, params)
    x = torch.rand(1, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        r_star = model.feedforward(x)["rate"][:, -5:] + 0.05
    times = torch.linspace(0, 3, 61, dtype=torch.float64)
    emu = simulate_hardware_wake(model, x, r_star, 3.0, times, 1e-10, 1e-10)
    circ = simulate_hardware_circuit(real, params, x[0], r_star[0], 3.0, times, options=TIGHT)
    for name in ("soma", "basal", "apical", "rate"):
        for a, b in zip(getattr(emu, name), getattr(circ, name)):
            assert float((a - b).abs().max()) <= 1e-4 * float(a.max() - a.min()), name
    for name in ("u", "u_int", "error"):          # the controller's op-amp stages
        a, b = getattr(emu, name), getattr(circ, name)
        assert float((a - b).abs().max()) <= 1e-4 * float(a.max() - a.min()), name


@needs_ngspice
@pytest.mark.parametrize("phase", ["inference", "wake"])
def test_layers_driven_by_their_input_layer_waveforms_are_the_whole_circuit(make_net, phase):
    """The op-amps' outputs are ideal sources: layers 2-3 alone, their rows driven by layer 1's
    waveforms from the whole circuit's run (linear between its time points), give that run's
    layer-2 and layer-3 nodes, to the interpolation between the time points (reltol 1e-6). In
    the wake phase the controller, which r_L drives, is in both netlists."""
    net = make_net()
    params = ControllerParams()
    real = realise_network(net, HardwareSpec.from_dict(SPEC), seed=2, v_scale=0.5)
    x = np.random.default_rng(1).uniform(-1, 1, 15)
    with torch.no_grad():
        r_star = HardwareModel(real, params).feedforward(
            torch.tensor(x)[None])["rate"][0, -5:].numpy() + 0.05
    names = [f"l{i}_{c}_{k}" for i in (2, 3) for c in ("soma", "rate", "vg")
             for k in range(real.layer_sizes[i])]
    drivers = [f"l1_{c}_{k}" for c in ("rate", "raten") for k in range(10)]
    kw = dict(phase=phase, t_end=1.0, options=TIGHT, r_star=r_star if phase == "wake" else None)
    whole = run_netlist(write_crossbar_netlist(real, params, x, **kw), names + drivers)
    t = whole["time"]
    rate, raten = (np.stack([whole[f"l1_{c}_{k}"] for k in range(10)], 1)
                   for c in ("rate", "raten"))
    text = write_crossbar_netlist(real, params, x, layers=[2, 3], drivers={1: (t, rate, raten)},
                                  **kw)
    assert "Xs1_0 " not in text and "Bd_l1_rate_0 " in text
    part = run_netlist(text, names)

    def error(part):
        return max(float(np.abs(whole[n] - np.interp(t, part["time"], part[n])).max())
                   / max(np.ptp(whole[n]), 1e-3) for n in names)

    assert error(part) <= 1e-4
    if phase == "inference":          # drivers 0.1 % off show (measured 4e-2)
        off = write_crossbar_netlist(real, params, x, layers=[2, 3],
                                     drivers={1: (t, rate * 1.001, raten)}, **kw)
        assert error(run_netlist(off, names)) > 1e-2


def test_layer_subsets_need_their_drivers(make_net):
    real = realise_network(make_net(), HardwareSpec.from_dict(SPEC), seed=2, v_scale=0.5)
    x = np.zeros(15)
    with pytest.raises(ConfigError, match="layers must be numbers from 1 to 3"):
        write_crossbar_netlist(real, ControllerParams(), x, phase="op", layers=[0, 2])
    with pytest.raises(ConfigError, match=r"the rows of layers \[1\] need drivers"):
        write_crossbar_netlist(real, ControllerParams(), x, phase="op", layers=[2, 3])
    t = np.array([0.0, 1e-6])
    with pytest.raises(ConfigError, match="drivers of layer 1 must be"):
        write_crossbar_netlist(real, ControllerParams(), x, phase="op", layers=[2],
                               drivers={1: (t, np.zeros((2, 10)), np.zeros((2, 9)))})

def test_ideal_hardware_changes_nothing(run_dir, tmp_path, capsys):  # noqa: F811
    """--hardware ideal: the validation takes today's path (the same numbers) and the export
    writes today's netlist, byte for byte."""
    results = []
    for hardware in (None, "ideal"):
        settings = ValidationSettings(points=51, hardware=hardware)
        out = validate_samples(load_samples(run_dir, 1, settings), settings, workers=1,
                               progress=False, circuit=model_circuit)
        results.append(out.results[0])
    assert results[1].hardware_effect is None
    for name, e in results[0].signals.items():
        assert results[1].signals[name].max == e.max
    assert all(np.array_equal(results[0].reference[k], results[1].reference[k])
               for k in results[0].reference)
    run = make_run_dir(tmp_path / "run")
    assert run_cli(["--netlist", tmp_path / "a.cir", run], capsys)[0] == 0
    assert run_cli(["--netlist", tmp_path / "b.cir", "--hardware", "ideal", run], capsys)[0] == 0
    assert (tmp_path / "a.cir").read_bytes() == (tmp_path / "b.cir").read_bytes()


def perturbed_device(samples, delta):
    """The hardware circuit with one device of the realisation changed by ``delta`` S: G⁻ of
    W_2 row 3 on the layer-1 neuron with the largest rate (basal_2,3 moves by R_f δ r_1)."""
    r_1 = samples.net.feedforward(samples.x[:1])[1][0][0]
    col = int(r_1.abs().argmax())

    def simulate(real, *args):
        real = copy.deepcopy(real)
        real.layers[1].G_neg[3, col] += delta
        return spice_hardware_circuit(real, *args)
    return simulate


@needs_ngspice
def test_toy_run_on_pcm_validates_and_a_changed_device_fails(run_dir):  # noqa: F811
    settings = ValidationSettings(points=201, hardware="pcm", scaling=Scaling(v_scale=0.5))
    samples = load_samples(run_dir, 1, settings)
    good = validate_samples(samples, settings, workers=1, progress=False)
    r = good.results[0]
    assert good.passed, r.failures
    assert r.max_error <= 1e-3 and r.angle_deg <= 1.0
    effect = r.hardware_effect
    assert max(effect["signals"].values()) > 1e-2 and effect["update_angle_deg"] > 1.0
    bad = validate_samples(samples, settings, workers=1, progress=False,
                           circuit=perturbed_device(samples, 2e-6))
    r = bad.results[0]
    assert not bad.passed
    assert r.diverged[0] == "basal2" and r.diverged[1].neuron == 3


def test_export_cli_writes_a_crossbar_netlist(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run")
    code, out, err = run_cli(["--netlist", tmp_path / "pcm.cir", "--hardware", "pcm",
                              "--v-scale", "0.5", run], capsys)
    assert code == 0, err
    assert "on 'pcm' hardware" in out and "wrote netlist" in out
    text = (tmp_path / "pcm.cir").read_text()
    assert ".subckt dfc_opamp" in text and "Vdd vdd 0 DC 1.5" in text and "tanh(" in text
    code, out, err = run_cli(["--netlist", tmp_path / "x.cir", "--hardware", "pcn", run], capsys)
    assert code == 2 and err.startswith("error: unknown hardware preset 'pcn'")
    if shutil.which("ngspice"):
        proc = subprocess.run(["ngspice", "-b", str(tmp_path / "pcm.cir")], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "l3_rate_0" in proc.stdout.lower()
