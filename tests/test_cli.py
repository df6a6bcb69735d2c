"""Bad input to `python -m dfc_analog.train`: one sentence on stderr, exit status 2, no traceback."""
import subprocess
import sys

import pytest

from dfc_analog.train import main

FAST = ["--train-samples", "256", "--val-samples", "64", "--test-samples", "64", "--epochs", "1",
        "--no-progress"]


def run_main(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def assert_one_sentence(code, err, *words):
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error") or
             "error:" in line]
    assert len(lines) == 1, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("argv,words", [
    (["--layer-sizes", "15", "0", "5", "--activations", "tanh", "linear"], ["layer_sizes"]),
    (["--layer-sizes", "15"], ["layer_sizes"]),
    (["--layer-sizes", "15", "10", "5"], ["activations", "one nonlinearity per layer"]),
    (["--tau-v", "-1"], ["tau_v", "positive"]),
    (["--tau-u", "0"], ["tau_u", "positive"]),
    (["--alpha", "-0.1"], ["alpha"]),
    (["--target-stepsize", "0"], ["target_stepsize"]),
    (["--method", "backprop"], ["--method", "invalid choice"]),
    (["--solver", "rk45"], ["--solver", "invalid choice"]),
    (["--activations", "tanh", "swish", "linear"], ["swish"]),
    (["--loss", "cross_entropy", "--activations", "tanh", "tanh", "tanh"],
     ["output activation", "linear"]),
    (["--loss", "cross_entropy"], ["regression", "mse"]),
    (["--device", "tpu"], ["device"]),
    (["--tau-v", "fast"], ["--tau-v", "invalid float"]),
])
def test_bad_options(capsys, tmp_path, argv, words):
    code, err = run_main(capsys, argv + FAST + ["--out", str(tmp_path / "run")])
    assert_one_sentence(code, err, *words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,words", [
    ("tau_v = \n", ["not valid TOML"]),
    ('tau_vv = 0.2\n', ["unknown setting 'tau_vv'", "did you mean 'tau_v'"]),
    ('tau_v = "fast"\n', ["'tau_v' must be a number"]),
    ('method = "backprop"\n', ["unknown method 'backprop'"]),
    ('solver = "rk45"\n', ["unknown solver 'rk45'"]),
    ('layer_sizes = [15, "ten", 5]\n', ["layer_sizes"]),
])
def test_bad_config_files(capsys, tmp_path, text, words):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    code, err = run_main(capsys, ["--config", str(path)] + FAST + ["--out", str(tmp_path / "r")])
    assert_one_sentence(code, err, *words)


def test_config_file_and_options(tmp_path, capsys):
    path = tmp_path / "cfg.toml"
    path.write_text('method = "dfc-ssa"\nk_p = 2.0\nlayer_sizes = [15, 8, 5]\n'
                    'activations = ["tanh", "linear"]\n')
    out = tmp_path / "run"
    assert main(["--config", str(path), "--k-p", "3.0"] + FAST + ["--out", str(out)]) == 0
    import json
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "dfc-ssa" and cfg["k_p"] == 3.0 and cfg["layer_sizes"] == [15, 8, 5]
    # the run's own config.json is a valid config file
    out2 = tmp_path / "run2"
    assert main(["--config", str(out / "config.json")] + FAST + ["--out", str(out2)]) == 0


def test_missing_config_file(capsys, tmp_path):
    code, err = run_main(capsys, ["--config", str(tmp_path / "nope.toml")] + FAST)
    assert_one_sentence(code, err, "does not exist")


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = run_main(capsys, FAST + ["--out", str(blocker / "run")])
    assert_one_sentence(code, err, "cannot write to output folder")


def test_existing_run_needs_resume_or_overwrite(capsys, tmp_path):
    out = str(tmp_path / "run")
    assert main(FAST + ["--out", out, "--method", "dfc-ssa"]) == 0
    capsys.readouterr()
    code, err = run_main(capsys, FAST + ["--out", out])
    assert_one_sentence(code, err, "already holds a run", "--resume")
    assert main(FAST + ["--out", out, "--overwrite", "--method", "dfc-ssa"]) == 0


def test_resume_extends_and_refuses_other_changes(capsys, tmp_path):
    out = str(tmp_path / "run")
    assert main(FAST + ["--out", out, "--method", "dfc-ssa"]) == 0
    assert main(["--resume", out, "--epochs", "2", "--no-progress"]) == 0
    assert "after 2 epochs" in capsys.readouterr().out
    code, err = run_main(capsys, ["--resume", out, "--k-p", "3"])
    assert_one_sentence(code, err, "only --epochs, --device and --threads")


@pytest.mark.parametrize("setup,words", [
    (lambda p: None, ["does not exist"]),
    (lambda p: p.mkdir(), ["not a dfc_analog run folder"]),
    (lambda p: (p.mkdir(), (p / "checkpoint.pt").write_bytes(b"garbage")), ["cannot be read"]),
])
def test_bad_resume_folder(capsys, tmp_path, setup, words):
    run = tmp_path / "run"
    setup(run)
    code, err = run_main(capsys, ["--resume", str(run)])
    assert_one_sentence(code, err, *words)


def test_diverging_settings(capsys, tmp_path):
    code, err = run_main(capsys, FAST + ["--solver", "authors-euler", "--step-size", "0.5",
                                         "--t-end", "50", "--out", str(tmp_path / "r")])
    assert_one_sentence(code, err, "diverged", "step_size")


def test_help_explains_symbols():
    out = subprocess.run([sys.executable, "-m", "dfc_analog.train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for text in ("τ_v", "k_p", "λ", "eq. (4)", "Lemma 1", "--resume", "--config"):
        assert text in out


def test_error_exit_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfc_analog.train", "--tau-v", "-1", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: tau_v must be a positive number, got -1.0."


def test_gpu_run_resumes_on_the_cpu(capsys, tmp_path, monkeypatch):
    """Without a GPU, --device cuda is one sentence, and a run trained on a GPU continues on the
    CPU with --device cpu."""
    import torch
    from dfc_analog import runio
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    code, err = run_main(capsys, FAST + ["--out", str(out), "--device", "cuda"])
    assert_one_sentence(code, err, "no CUDA device", "--device cpu")
    assert main(FAST + ["--out", str(out), "--method", "dfc-ssa", "--overwrite"]) == 0
    state = runio.load_checkpoint(out)
    state["config"]["device"] = "cuda"          # as written by a run on a GPU
    runio.save_checkpoint(out / runio.CHECKPOINT, state)
    code, err = run_main(capsys, ["--resume", str(out), "--epochs", "2"])
    assert_one_sentence(code, err, "no CUDA device", "--device cpu")
    assert main(["--resume", str(out), "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    assert "after 2 epochs" in capsys.readouterr().out
