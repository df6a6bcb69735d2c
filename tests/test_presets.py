"""Presets of Table 1 and Table 2: every file is a valid config holding the authors' values;
--list-presets, --preset with overrides, and --seeds with its mean ± std table."""
import csv
import json
import statistics

import pytest

from dfc_analog import Config, ConfigError
from dfc_analog.config.presets import (PRESET_DIR, describe_presets, load_preset, preset_config,
                                preset_names)
from dfc_analog.train import main

from tests.test_data import write_set

TASKS = ("mnist", "fashion-mnist", "mnist-autoencoder", "mnist-train-loss")
VARIANTS = ("bp", "dfa", "dfc", "dfc-ss", "dfc-ssa", "dfc-fixed", "dfc-ss-fixed", "dfc-ssa-fixed")
TINY = ["--layer-sizes", "784", "12", "10", "--activations", "tanh", "linear", "--epochs", "2",
        "--no-progress"]


def test_every_table1_cell_has_a_preset():
    names = set(preset_names())
    assert {f"{t}-{v}" for t in TASKS for v in VARIANTS} <= names
    for method in ("dfc", "dfc-ss"):
        for lam in ("0.001", "0.01", "0.1", "0.5"):
            assert f"mnist-{method}-lambda-{lam}" in names
        for alpha in ("0.0001", "0.001", "0.01", "0.1"):
            assert f"mnist-{method}-alpha-{alpha}" in names


@pytest.mark.parametrize("name", preset_names())
def test_preset_is_a_valid_config(name):
    cfg = preset_config(name)
    assert cfg.batch_size == 128 and cfg.adam_betas == [0.99, 0.99] and cfg.normalize_lr
    assert cfg.dtype == "float32" and cfg.loss_reduction == "mean"
    if cfg.method in ("dfc", "dfc-ss", "dfc-ssa"):
        assert cfg.leak == "total" and cfg.tau_v == 0.2 and cfg.k_p == 2.0
    if cfg.train_feedback:
        assert cfg.sleep_epochs == 3 and cfg.fb_optimizer == "adam"
        assert cfg.initial_feedback == "xavier"
    elif cfg.method != "dfa":
        assert cfg.initial_feedback == "weight_product"
    text = (PRESET_DIR / f"{name}.toml").read_text()
    assert text.startswith("# ") and "Table" in text


def test_authors_values_spot_checks():
    dfc = preset_config("mnist-dfc")
    assert dfc.lr / dfc.target_stepsize == pytest.approx(1.189e-3, rel=1e-3)
    assert dfc.t_end == pytest.approx(0.02 * 999) and dfc.alpha == 0.001389
    assert dfc.t_end_fb == pytest.approx(0.00203 * 47) and dfc.sleep_epochs_init == 10
    assert dfc.layer_sizes == [784, 256, 256, 256, 10] and dfc.epochs == 100
    ae = preset_config("mnist-autoencoder-dfc")
    assert ae.layer_sizes == [784, 256, 32, 256, 784] and ae.epochs == 25
    assert ae.activations == ["tanh", "linear", "tanh", "linear"] and ae.loss == "mse"
    assert ae.sigma_fb_output == 0.0 and ae.sleep_epochs_init == 15
    assert preset_config("fashion-mnist-dfc-fixed").alpha == 0.7985
    assert preset_config("fashion-mnist-dfc-ss-fixed").t_end == pytest.approx(0.0005 * 2999)
    assert preset_config("mnist-train-loss-dfc").report == "final-train-loss"
    assert preset_config("mnist-bp").clip_grad_norm == 0.0     # the authors' BP is unclipped
    # broken authors' configs are fixed and say so
    for name, bug in (("mnist-dfc-ssa", "B2"), ("fashion-mnist-dfa", "B2"),
                      ("mnist-train-loss-dfc-ssa-fixed", "B3"),
                      ("mnist-autoencoder-dfc-fixed", "B4")):
        assert f"FIXED {bug}" in (PRESET_DIR / f"{name}.toml").read_text()


def test_table2_presets_extend_table1():
    base, swept = load_preset("mnist-dfc-ss"), load_preset("mnist-dfc-ss-alpha-0.01")
    assert swept["alpha"] == 0.01 and swept["target_stepsize"] == 0.08
    assert swept["lr"] / swept["target_stepsize"] == pytest.approx(1.189e-3, rel=1e-3)
    assert {k: v for k, v in swept.items() if k not in ("alpha", "target_stepsize", "lr")} == \
        {k: v for k, v in base.items() if k not in ("alpha", "target_stepsize", "lr")}
    lam = preset_config("mnist-dfc-lambda-0.5")
    assert lam.target_stepsize == 0.5 and lam.alpha == 0.0015 and lam.method == "dfc"


def test_unknown_preset_suggests_a_name():
    with pytest.raises(ConfigError, match="unknown preset 'mnist-dfc-sa'.*did you mean"):
        load_preset("mnist-dfc-sa")


def test_list_presets(capsys):
    assert main(["--list-presets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(describe_presets()) == len(preset_names())
    assert any(line.startswith("mnist-dfc-ssa ") and "Table 1" in line for line in out)


def test_preset_with_overrides(tmp_path, capsys):
    write_set(tmp_path / "data", n_train=60, n_test=20)
    out = tmp_path / "run"
    code = main(["--preset", "mnist-dfc-ssa", "--data-dir", str(tmp_path / "data"),
                 "--sleep-epochs-init", "0", "--sleep-epochs", "1", "--t-end-fb", "0.01",
                 "--out", str(out)] + TINY)
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layer_sizes"] == [784, 12, 10] and cfg["epochs"] == 2       # overridden
    assert cfg["target_stepsize"] == 0.07794 and cfg["fb_adam_eps"] == 1.561e-06  # preset
    assert "best validation at epoch" in capsys.readouterr().out
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"val_error", "test_error", "sleep_seconds"} <= set(rows[0])
    assert 0 <= float(rows[-1]["test_error"]) <= 100


def test_preset_then_config_file_then_options(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("alpha = 0.01\nk_p = 3.0\n")
    from dfc_analog.train import build_parser, config_from_args
    args = build_parser().parse_args(["--preset", "mnist-dfc", "--config", str(path), "--k-p",
                                      "4"])
    cfg = config_from_args(args)
    assert (cfg.alpha, cfg.k_p, cfg.target_stepsize) == (0.01, 4.0, 0.07794)


def test_seeds_table(tmp_path, capsys):
    write_set(tmp_path / "data", n_train=60, n_test=20)
    out = tmp_path / "seeds"
    argv = ["--preset", "mnist-bp", "--data-dir", str(tmp_path / "data"), "--seeds", "2",
            "--seed", "5", "--out", str(out)] + TINY
    assert main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("seed*")) == ["seed5", "seed6"]
    values = []
    for seed in (5, 6):
        with open(out / f"seed{seed}" / "metrics.csv") as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)][1:]
        best = min(rows, key=lambda r: (r["val_error"], r["epoch"]))
        values.append(best["test_error"])
    with open(out / "table.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["mean"]) == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert float(row["std"]) == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert row["metric"] == "test error %" and row["seeds"] == "2"
    md = (out / "table.md").read_text()
    assert md.startswith("| run | metric | mean ± std |") and "mnist bp" in md
    capsys.readouterr()
    # the same command again finds every seed finished and rewrites the same table
    assert main(argv) == 0
    assert capsys.readouterr().out.count("finished run") == 2
    with open(out / "table.csv") as f:
        assert list(csv.DictReader(f))[0]["mean"] == row["mean"]
    # other settings in the same folder: one sentence
    code = main(argv[:-len(TINY)] + TINY[:-2] + ["3", "--no-progress"])
    assert code == 0  # more epochs: the seeds continue
    code = main(argv + ["--lr", "1e-6"])
    assert code == 2 and "holds a run with other settings" in capsys.readouterr().err


def test_config_of_a_preset_run_is_loadable(tmp_path):
    cfg = preset_config("mnist-dfc", epochs=1)
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
