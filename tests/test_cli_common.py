"""What every command line shares (dfc_analog.cli): its own name in usage, --version, --threads,
negative numbers as values; and the options issue 14 added: --data-dir on the tools that read a
run, dfc-validate --sample-index/--split, dfc-evaluate --split val beside the test results,
--overwrite clearing the old run's outputs, and the stiff ODE reference of the validation."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfc_analog import cli, evaluate, export, figures, runio, train, validate
from dfc_analog.config.options import Config
from dfc_analog.errors import DFCError
from dfc_analog.training.loop import run_training
from dfc_analog.validation import compare
from dfc_analog.validation.compare import ValidationSettings, load_samples
from dfc_analog.version import __version__

from tests.test_data import write_set

ROOT = Path(__file__).resolve().parents[1]
MAINS = {"train": train.main, "evaluate": evaluate.main, "export": export.main,
         "validate": validate.main, "figures": figures.main}
TINY = dict(layer_sizes=[4, 3, 2], activations=["tanh", "linear"], method="dfc-ssa",
            train_samples=32, val_samples=8, test_samples=8, batch_size=16, epochs=1,
            diagnostics=False, dtype="float64")


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("common")
    write_set(root / "data", n_train=40, n_test=10)
    cfg = Config(dataset="mnist", data_dir=str(root / "data"), layer_sizes=[784, 10],
                 activations=["linear"], loss="cross_entropy", method="dfc-ssa", epochs=1,
                 train_samples=20, val_samples=5, diagnostics=False, dtype="float64")
    run_training(cfg, root / "run", progress=False)
    return root / "run"


@pytest.mark.parametrize("module", sorted(MAINS))
def test_version_and_usage_name_every_command(module, monkeypatch, capsys):
    script = f"dfc-{module}"
    assert cli.SCRIPTS[script] == module
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/{script}"])
    with pytest.raises(SystemExit) as exc:
        MAINS[module](["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"{script} {__version__}\n"
    with pytest.raises(SystemExit):
        MAINS[module](["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {script} ")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "dfc_analog" / f"{module}.py")])
    with pytest.raises(SystemExit):
        MAINS[module](["--help"])
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: python -m dfc_analog.{module} ")
    assert "--threads" in help_text


def test_version_of_a_module_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfc_analog.figures", "--version"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout == f"python -m dfc_analog.figures {__version__}\n"


def test_negative_numbers_are_values():
    p = cli.parser("x", threads=False)
    p.add_argument("--reltol", type=float)
    p.add_argument("--sizes", type=int, nargs="+")
    args = p.parse_args(["--reltol", "-1e-3", "--sizes", "3", "-4", "-5"])
    assert args.reltol == -1e-3 and args.sizes == [3, -4, -5]
    assert p.parse_args(["--reltol", "-inf"]).reltol == float("-inf")


def test_threads_are_set_and_recorded(tmp_path, monkeypatch):
    assert train.main(["--out", str(tmp_path / "r"), "--threads", "1", "--no-progress",
                       "--layer-sizes", "4", "3", "2", "--activations", "tanh", "linear",
                       "--train-samples", "16", "--val-samples", "4", "--test-samples", "4",
                       "--epochs", "1", "--method", "dfc-ssa"]) == 0
    assert torch.get_num_threads() == 1
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["threads"] == 1 and saved["dfc_analog_version"] == __version__
    assert Path(saved["data_dir"]).is_absolute()
    assert train.main(["--resume", str(tmp_path / "r"), "--epochs", "2", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["threads"] == cli.available_cores() and saved["epochs"] == 2
    torch.set_num_threads(cli.available_cores())


def test_data_dir_follows_a_moved_run(mnist_run, tmp_path, capsys):
    """The run and its data moved elsewhere: --data-dir finds the data; a failed look-up makes
    no folder."""
    run = shutil.copytree(mnist_run, tmp_path / "run")
    data = shutil.copytree(mnist_run.parent / "data", tmp_path / "moved-data")
    gone = Path(json.loads((run / "config.json").read_text())["data_dir"])
    assert gone.is_absolute()
    shutil.move(gone, tmp_path / "elsewhere")
    try:
        assert evaluate.main([str(run)]) == 2
        assert "missing" in capsys.readouterr().err and not gone.exists()
        assert evaluate.main([str(run), "--data-dir", str(data)]) == 0
        assert export.main(["--netlist", str(tmp_path / "o.cir"), "--phase", "op",
                            "--data-dir", str(data), str(run)]) == 0
        samples = load_samples(run, [2], ValidationSettings(), "test", str(data))
        assert samples.indices == [2]
    finally:
        shutil.move(tmp_path / "elsewhere", gone)


def test_evaluate_val_split_keeps_the_test_results(mnist_run, tmp_path, capsys):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    assert evaluate.main([str(run)]) == 0
    test_json = (run / "evaluation.json").read_bytes()
    assert evaluate.main([str(run), "--split", "val"]) == 0
    assert (run / "evaluation.json").read_bytes() == test_json
    val = json.loads((run / "evaluation-val.json").read_text())
    assert val["split"] == "val" and val["samples"] == 5
    assert Path(val["figure"]).name == "confusion_matrix-val.png"
    assert (run / "confusion_matrix.png").is_file() and (run / "confusion_matrix-val.png").is_file()


def test_validate_picks_samples_and_split(mnist_run):
    settings = ValidationSettings()
    cfg, _ = runio.load_run(mnist_run)
    from dfc_analog.data import load_dataset
    val = load_dataset(cfg).val
    samples = load_samples(mnist_run, [4, 0], settings, "val")
    assert samples.indices == [4, 0] and samples.split == "val"
    torch.testing.assert_close(samples.x, val.x[[4, 0]].double())
    with pytest.raises(DFCError, match="out of range: the val split holds 5 samples"):
        load_samples(mnist_run, [5], settings, "val")


def test_overwrite_clears_the_old_runs_outputs(mnist_run, tmp_path):
    run = shutil.copytree(mnist_run, tmp_path / "run")
    assert evaluate.main([str(run)]) == 0
    (run / "validation-wake").mkdir()
    (run / "validation-wake" / "report.json").write_text("{}")
    cfg = json.loads((run / "config.json").read_text())
    argv = ["--out", str(run), "--overwrite", "--no-progress", "--dataset", "mnist",
            "--data-dir", cfg["data_dir"], "--layer-sizes", "784", "10", "--activations",
            "linear", "--loss", "cross_entropy", "--method", "dfc-ssa", "--epochs", "1",
            "--train-samples", "20", "--val-samples", "5", "--no-diagnostics"]
    assert train.main(argv) == 0
    assert not (run / "evaluation.json").exists() and not (run / "confusion_matrix.png").exists()
    assert not (run / "validation-wake").exists() and (run / "checkpoint.pt").is_file()


def test_a_failed_validation_leaves_no_output_folder(mnist_run, tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise DFCError("the circuit simulator failed.")
    monkeypatch.setattr(validate, "validate_samples", fail)
    out = tmp_path / "a" / "b"
    assert validate.main([str(mnist_run), "--out", str(out), "--samples", "1"]) == 2
    assert "circuit simulator failed" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_stiff_reference_falls_back_to_rosenbrock(make_net, monkeypatch):
    """Beyond the dopri5 step budget the reference is solved with rosenbrock, to the same
    tolerance: both agree to a few tolerances."""
    from dfc_analog.model.dynamics import ControllerParams
    net = make_net((3, 4, 2), seed=3)
    params = ControllerParams(tau_v=0.02, alpha=0.0015, k_p=200.0)
    x = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    r_star = net.feedforward(x[None])[1][-1][0] + torch.tensor([0.05, -0.02],
                                                                dtype=torch.float64)
    times = torch.linspace(0, 1.0, 51, dtype=torch.float64)
    explicit, method = compare.reference_trajectory(net, params, x, r_star, 1.0, times, 1e-8)
    assert method == "dopri5"
    notes = []
    monkeypatch.setattr(compare, "REFERENCE_EXPLICIT_STEPS", 50)
    stiff, method = compare.reference_trajectory(net, params, x, r_star, 1.0, times, 1e-8,
                                                 note=notes.append)
    assert method == "rosenbrock" and "stiff" in notes[0]
    for a, b in zip(explicit.soma + [explicit.u], stiff.soma + [stiff.u]):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * float(a.abs().max()))
