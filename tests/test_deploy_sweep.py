"""``dfc-sweep deploy``: trained runs on many chips, over the values of one spec field, as a sweep
folder: blocks of chips combine into the statistics of all chips at once, the sweep resumes,
bad fields are one sentence, and the table, CSV and plot are written."""
import csv

import pytest
import torch

from dfc_analog import runio
from dfc_analog.data import load_dataset
from dfc_analog.hardware import load_spec
from dfc_analog.model.deployment import deploy
from dfc_analog.sweep.cli import main
from dfc_analog.sweep.deploy import spec_variant

from tests.test_netlist import make_run_dir


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
