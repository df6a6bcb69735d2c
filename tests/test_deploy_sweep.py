"""``dfc-sweep deploy``: trained runs on many chips, over the values of one spec field, as a sweep
folder: blocks of chips combine into the statistics of all chips at once, the sweep resumes,
bad fields are one sentence, and the table, CSV and plot are written. The circuit Monte Carlo
(``--circuit-chips``) agrees with the emulation on the same draws and would catch another chip."""
import csv

import pytest
import torch

from dfc_analog import runio
from dfc_analog.data import load_dataset
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.hardware.batch import realise_network_stack
from dfc_analog.model.deployment import deploy
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.sweep.cli import main
from dfc_analog.sweep.deploy import (circuit_outputs, compare_outputs, crossbar_devices,
                                     spec_variant)

from tests.test_netlist import make_run_dir
from tests.test_validate import needs_ngspice


@pytest.fixture
def runs(tmp_path):
    return [make_run_dir(tmp_path / "a", test_samples=40),
            make_run_dir(tmp_path / "b", test_samples=40, seed=7)]


def summary(out):
    with open(out / "deployment.csv") as f:
        return list(csv.DictReader(f))


def test_deploy_sweep_over_bits(runs, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["deploy", *map(str, runs), "--hardware", "pcm", "--realisations", "6", "--block",
            "4", "--vary", "synapse.bits=2,8", "--v-scale", "0.5", "--float64", "--out",
            str(out), "--workers", "1", "--no-progress", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "8 cells computed" in text and "synapse.bits" in text
    rows = summary(out)
    assert [(r["label"][-3:], r["value"]) for r in rows] == [
        ("(a)", "2"), ("(a)", "8"), ("(b)", "2"), ("(b)", "8")]
    assert all(r["chips"] == "6" and r["metric"] == "test loss" for r in rows)
    for run in ("(a)", "(b)"):       # 4 states per device lose more than 256
        two, eight = (float(r["mean"]) for r in rows if r["label"].endswith(run))
        assert two > eight
    assert (out / "deployment.png").stat().st_size > 0 and (out / "table.md").exists()

    # the blocks (4 + 2 chips) combine into the statistics of the 6 chips at once
    cfg, net = runio.load_run(runs[0])
    test = load_dataset(cfg).test
    spec = spec_variant(load_spec("pcm"), "synapse.bits", 8)
    whole = deploy(net, spec, range(6), test.x, test.y, "mse", dtype=torch.float64,
                   v_scale=0.5)
    ok = whole.loss[~whole.clipped]
    assert float(rows[1]["mean"]) == pytest.approx(float(ok.mean()), rel=1e-12)
    assert float(rows[1]["std"]) == pytest.approx(float(ok.std()), rel=1e-9)
    assert float(rows[1]["clipped"]) == pytest.approx(float(whole.clipped.double().mean()))

    assert main(argv) == 0                                   # resumed: nothing to compute
    assert "0 cells computed, 8 already finished" in capsys.readouterr().out


@pytest.mark.parametrize("vary, says", [
    ("synapse.colour=1,2", "unknown hardware field 'synapse.colour'"),
    ("bits=2,4", "TABLE.FIELD"),
    ("synapse.g_ratio=0.5", "must exceed 1"),
    ("synapse.bits=0", "bits must be a whole number"),
    ("amplifier.gain=1", "gain A₀ must exceed 1"),
])
def test_bad_fields_are_one_sentence(runs, tmp_path, capsys, vary, says):
    argv = ["deploy", str(runs[0]), "--hardware", "pcm", "--vary", vary, "--out",
            str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err


def test_rram_times_are_checked_before_any_cell(runs, tmp_path, capsys):
    argv = ["deploy", str(runs[0]), "--hardware", "rram", "--vary",
            "synapse.drift_time=1,5", "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "fitted at" in capsys.readouterr().err
    assert not (tmp_path / "s" / "cells").exists()


def test_g_ratio_sets_g_min():
    spec = spec_variant(load_spec("pcm"), "synapse.g_ratio", 10)
    assert spec.synapse.g_min == pytest.approx(spec.synapse.g_max / 10)


def test_help_names_both_sweeps(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "dfc-sweep deploy" in capsys.readouterr().out.replace("\n", " ")
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    text = capsys.readouterr().out
    assert "--yield-within" in text and "synapse.g_ratio" in text


# ---- circuit Monte Carlo: the first chips in ngspice against the emulation on the same draws

def emulated_rows(run, seeds, samples, v_scale):
    """r_L⁺ of chips ``seeds`` on the first ``samples`` test inputs by HardwareModel.feedforward
    on realise(seed) (independent of the deployment's folding)."""
    cfg, net = runio.load_run(run)
    x = load_dataset(cfg).test.x[:samples].double()
    n_L = net.layer_sizes[-1]
    return torch.stack([HardwareModel(realise_network(net, load_spec("pcm"), s, v_scale),
                                      ControllerParams.from_config(cfg)).feedforward(x)["rate"]
                        [:, -n_L:] for s in seeds])


@needs_ngspice
def test_circuit_monte_carlo_agrees_with_the_emulation(runs, tmp_path, capsys):
    """Chips 0 and 1 of 3, one per cell (the sums combine over blocks), 3 samples each: the
    operating points agree with the emulation to ngspice's tolerance (reltol 1e-6), in class
    and within 1e-3 of the output range; the emulation is that of realise(seed r)."""
    out = tmp_path / "mc"
    argv = ["deploy", str(runs[0]), "--hardware", "pcm", "--realisations", "3", "--block", "1",
            "--circuit-chips", "2", "--circuit-samples", "3", "--v-scale", "0.5", "--out",
            str(out), "--workers", "1", "--no-progress", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "circuit vs emulation, DFC (a): 2 chips x 3 samples in ngspice" in text
    row, = summary(out)
    assert (row["circuit_chips"], row["circuit_samples"]) == ("2", "3")
    assert float(row["class_agreement"]) == 1.0
    assert float(row["output_difference"]) <= 1e-3
    assert float(row["circuit"]) == pytest.approx(float(row["emulation"]), rel=1e-3)
    r = emulated_rows(runs[0], [0, 1], 3, 0.5)
    cfg, _ = runio.load_run(runs[0])
    y = load_dataset(cfg).test.y[:3].double()
    assert float(row["emulation"]) == pytest.approx(float(((r - y) ** 2).mean()), rel=1e-10)
    assert main(argv) == 0                         # resumed: the circuit results are kept
    assert "0 cells computed, 3 already finished" in capsys.readouterr().out
    assert summary(out) == [row]


@needs_ngspice
def test_circuit_monte_carlo_catches_another_chip(runs):
    """The comparison is sharp: chip 0's circuit against chip 1's emulation differs by far more
    than the tolerance, while against its own it agrees."""
    cfg, net = runio.load_run(runs[0])
    x = load_dataset(cfg).test.x[:3]
    stack = realise_network_stack(net, load_spec("pcm"), [0], 0.5)
    circuit = circuit_outputs(stack, ControllerParams.from_config(cfg), x)
    own, other = emulated_rows(runs[0], [0], 3, 0.5), emulated_rows(runs[0], [1], 3, 0.5)
    y = load_dataset(cfg).test.y[:3]
    same, wrong = compare_outputs(circuit, own, y), compare_outputs(circuit, other, y)
    spread = lambda c: c["circuit_diff"] / (c["emulation_max"] - c["emulation_min"])  # noqa: E731
    assert spread(same) < 1e-6 and spread(wrong) > 1e-2


def test_compare_outputs_counts_classes_and_errors():
    circuit = torch.tensor([[[0.1, 0.9], [0.8, 0.3]], [[0.6, 0.5], [0.2, 0.1]]])
    emulation = torch.tensor([[[0.1, 0.8], [0.7, 0.3]], [[0.4, 0.5], [0.2, 0.2]]])
    c = compare_outputs(circuit, emulation, torch.tensor([1, 1]))
    # argmax: circuit [1, 0], [0, 0]; emulation [1, 0], [1, 0]; labels 1, 1
    assert c["circuit_pairs"] == 4 and c["circuit_agree"] == 3
    assert c["circuit_sum"] == 300.0 and c["emulation_sum"] == 200.0
    assert c["circuit_diff"] == pytest.approx(0.2)
    assert (c["emulation_min"], c["emulation_max"]) == pytest.approx((0.1, 0.8))


def test_crossbar_devices_count_the_netlist():
    assert crossbar_devices([784, 256, 256, 256, 10]) == 685788     # README's large netlist


@pytest.mark.parametrize("extra, says", [
    (["--hardware", "ideal"], "finite gain"),
    (["--hardware", "pcm", "--circuit-samples", "0"], "--circuit-samples must be at least 1"),
    (["--hardware", "pcm", "--circuit-chips", "-1"], "--circuit-chips must be 0"),
])
def test_circuit_options_are_checked(runs, tmp_path, capsys, extra, says):
    argv = ["deploy", str(runs[0]), "--circuit-chips", "1", *extra, "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "\n" not in err.strip()


def test_networks_too_large_for_ngspice_are_refused(tmp_path, capsys):
    run = make_run_dir(tmp_path / "big", sizes=(100, 100, 10),
                       activations=["tanh", "linear"])
    argv = ["deploy", str(run), "--hardware", "pcm", "--circuit-chips", "1", "--out",
            str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "24,420 crossbar devices, more than the 20,000" in err
    assert not (tmp_path / "s" / "cells").exists()
