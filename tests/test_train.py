"""Training: the loss falls, the run folder is complete and readable, runs repeat and resume."""
import csv
import json

import numpy as np
import pytest
import torch

import importlib
from dfc_analog import Config, DivergenceError, load_run
from dfc_analog import run_training as train

train_module = importlib.import_module("dfc_analog.training.loop")

SMALL = dict(train_samples=640, val_samples=200, test_samples=200, epochs=3, diagnostics=False)


def read_metrics(run):
    with open(run / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("method,epochs,factor", [("dfc-ssa", 12, 0.5), ("dfc", 6, 0.75),
                                                   ("dfc-ss", 6, 0.75)])
def test_training_lowers_test_loss(tmp_path, method, epochs, factor):
    cfg = Config(**{**SMALL, "train_samples": 1280, "epochs": epochs}, method=method)
    rows = train(cfg, tmp_path / method, progress=False)
    assert rows[-1]["test_loss"] < factor * rows[0]["test_loss"], rows


def test_run_folder_contents(tmp_path):
    cfg = Config(**{**SMALL, "diagnostics": True})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    config = json.loads((run / "config.json").read_text())
    for key in ("layer_sizes", "activations", "tau_v", "tau_u", "alpha", "k_p",
                "target_stepsize", "loss"):
        assert key in config
    assert config["layer_sizes"] == [15, 10, 10, 5]
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert {"condition1", "condition2", "angle_gn", "angle_mn", "angle_bp", "angle_ssa",
            "max_eig_condition3", "max_eig_pi"} <= set(rows[0])
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(run / "weights.npz", allow_pickle=False) as w:
        assert sorted(w.files) == sorted(f"{k}{i}" for k in "WbQ" for i in (1, 2, 3))
        assert w["W1"].shape == (10, 15) and w["W3"].shape == (5, 10)
        assert w["b2"].shape == (10,) and w["Q1"].shape == (10, 5)
        assert all(w[k].dtype == np.float64 for k in w.files)
        _, net = load_run(run)
        np.testing.assert_array_equal(w["W2"], net.W[1].detach().double().numpy())
    assert not list(run.glob(".*.tmp"))


def test_same_seed_same_run(tmp_path):
    cfg = Config(**SMALL)
    train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False)
    with np.load(tmp_path / "a/weights.npz") as a, np.load(tmp_path / "b/weights.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    train(cfg.replace(seed=7), tmp_path / "c", progress=False)
    with np.load(tmp_path / "a/weights.npz") as a, np.load(tmp_path / "c/weights.npz") as c:
        assert not np.array_equal(a["W1"], c["W1"])


@pytest.mark.parametrize("extra,stop_at,expected", [
    ({}, 7, (1, 1)),                                            # wake epoch 2, batch 2
    (dict(train_feedback=True, sleep_epochs_init=2, sleep_epochs=1), 13, (2, 2)),  # in a sleep
    (dict(method="dfc", train_feedback=True, schedule="single-phase", sleep_epochs_init=1,
          t_end=1.0, step_size=0.02), 8, (1, 2)),                 # in a single-phase epoch
    (dict(method="dfc-ssa", train_feedback=True, sleep="expected", schedule="single-phase",
          sleep_epochs_init=1), 13, (3, 2)),                     # DFC-SSA's single phase
])
def test_interrupted_run_resumes_as_if_never_stopped(tmp_path, monkeypatch, extra, stop_at,
                                                     expected):
    cfg = Config(**SMALL, **extra)
    train(cfg, tmp_path / "straight", progress=False)

    calls = {"n": 0}

    def interrupting(real):
        def call(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == stop_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return call

    for name in ("forward_update", "feedback_update", "single_phase_update",
                 "single_phase_ssa_update"):
        monkeypatch.setattr(train_module, name, interrupting(getattr(train_module, name)))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    state = torch.load(tmp_path / "resumed/checkpoint.pt", weights_only=True)
    assert (state["pass"], state["batch"]) == expected
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    with np.load(tmp_path / "straight/weights.npz") as a, \
            np.load(tmp_path / "resumed/weights.npz") as b:
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12)
    assert read_metrics(tmp_path / "straight")[-1]["test_loss"] == pytest.approx(
        read_metrics(tmp_path / "resumed")[-1]["test_loss"], rel=1e-9)


def test_interrupted_expected_sleep_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    """Interrupted in the second sleep pass of epoch 1 (the Jacobians kept since its first pass
    are lost), the resumed run recomputes them and ends with the same weights."""
    cfg = Config(**SMALL, method="dfc-ssa", train_feedback=True, sleep="expected",
                 sleep_epochs_init=2, sleep_epochs=2)
    train(cfg, tmp_path / "straight", progress=False)
    calls = {"n": 0}
    real = train_module.apply_feedback_update

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 18:                 # 2 pre-training passes and one sleep pass of 5
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_module, "apply_feedback_update", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    state = torch.load(tmp_path / "resumed/checkpoint.pt", weights_only=True)
    assert (state["pass"], state["batch"]) == (3, 2)
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    with np.load(tmp_path / "straight/weights.npz") as a, \
            np.load(tmp_path / "resumed/weights.npz") as b:
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12)


def test_a_step_to_infinite_weights_names_them(make_net):
    """A feedback step that overflows Q stops the run naming Q (not W or b, which it leaves)."""
    net = make_net(feedback_init="xavier")
    cfg = Config(fb_optimizer="sgd", fb_clip_grad_norm=0.0, fb_weight_decay=0.0)
    opt = train_module.make_feedback_optimizer(cfg, net, 1e308)
    g = [torch.ones_like(q) for q in net.Q]
    g[1][0, 0] = 1e10
    with pytest.raises(DivergenceError, match="feedback optimizer step made the weights Q2 NaN"):
        train_module.apply_feedback_update(cfg, net, opt, g)


@pytest.mark.parametrize("together", [False, True])
@pytest.mark.parametrize("max_norm", [1.5, 1e3])
def test_clipping_is_clip_grad_norm(together, max_norm):
    """clip_each_ gives torch's clip_grad_norm_ applied to one tensor at a time (the authors'
    clipping of the W_i and b_i), clip_together_ applied to all of them at once (of the Q_i)."""
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(7, 3, generator=gen) * s for s in (0.1, 1.0, 30.0)] + \
        [torch.zeros(4), torch.randn(2, generator=gen) * 9]
    if not together:
        grads[-1] = grads[-1].double()
    expected = [torch.nn.Parameter(g.clone()) for g in grads]
    for p, g in zip(expected, grads):
        p.grad = g.clone()
    for group in [expected] if together else [[p] for p in expected]:
        torch.nn.utils.clip_grad_norm_(group, max_norm)
    clipped = [g.clone() for g in grads]
    (train_module.clip_together_ if together else train_module.clip_each_)(clipped, max_norm)
    for p, g in zip(expected, clipped):
        assert torch.equal(p.grad, g)


def test_diverging_dynamics_stop_without_writing_nans(tmp_path):
    # Euler with Δt/τ_v = 2.5 is unstable: the state explodes within the first minibatch
    cfg = Config(**SMALL, solver="authors-euler", step_size=0.5, t_end=50.0)
    with pytest.raises(DivergenceError, match="diverged"):
        train(cfg, tmp_path / "run", progress=False)
    with np.load(tmp_path / "run/weights.npz") as w:
        assert all(np.isfinite(w[k]).all() for k in w.files)


def test_float64_and_float32_train_alike(tmp_path):
    rows = {dt: train(Config(**SMALL, dtype=dt, method="dfc-ssa"), tmp_path / dt,
                      progress=False) for dt in ("float32", "float64")}
    assert rows["float32"][-1]["test_loss"] == pytest.approx(rows["float64"][-1]["test_loss"],
                                                             rel=1e-3)


def test_run_trained_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    """A run folder whose config names a CUDA device reads back where there is none."""
    from dfc_analog import runio
    run = tmp_path / "run"
    train(Config(**{**SMALL, "epochs": 1}), run, progress=False)
    state = runio.load_checkpoint(run)
    state["config"]["device"] = "cuda:0"
    runio.save_checkpoint(run / runio.CHECKPOINT, state)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg, net = load_run(run)
    assert cfg.device == "cpu" and net.device.type == "cpu"
    with np.load(run / "weights.npz") as w:
        np.testing.assert_array_equal(w["W1"], net.W[0].detach().double().numpy())


def test_a_finished_run_is_found_with_a_relative_data_dir(tmp_path, monkeypatch):
    """A run records data_dir as an absolute path; finished_metrics (the benches' --reuse) still
    recognises the run when asked with the same folder written relatively, and not with
    another folder."""
    monkeypatch.chdir(tmp_path)
    cfg = Config(**{**SMALL, "epochs": 1}, data_dir="data")
    train(cfg, tmp_path / "run", progress=False)
    rows = train_module.finished_metrics(tmp_path / "run", cfg)
    assert rows is not None and len(rows) == 2
    assert train_module.finished_metrics(tmp_path / "run", cfg.replace(data_dir="other")) is None
