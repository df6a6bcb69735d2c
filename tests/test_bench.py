"""The arithmetic the MNIST bench prints: its count of matrix-product FLOPs per training sample
equals the products torch executes in one BP step and in one sleep phase of the network; the
single-phase preset is the single-phase bench's measured configuration."""
import argparse
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dfc_analog import DFCNetwork, SleepParams, feedback_update
from dfc_analog.config.presets import preset_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from mnist_table import product_flops, report  # noqa: E402
import single_phase  # noqa: E402
import ssa_minibatch  # noqa: E402

aten = torch.ops.aten


class MatrixProducts(TorchDispatchMode):
    """Counts 2 m k n FLOPs for every (m × k)·(k × n) product, in-place ones included."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        if packet in (aten.mm, aten.addmm, aten.addmm_, aten.bmm, aten.baddbmm, aten.baddbmm_):
            a, b = args[-2:] if packet in (aten.addmm, aten.addmm_, aten.baddbmm, aten.baddbmm_) \
                else args[:2]
            self.flops += 2 * a.shape[:-1].numel() * a.shape[-1] * b.shape[-1]
        else:
            assert packet not in (aten.matmul, aten.dot, aten.mv, aten.addmv), packet
        return func(*args, **(kwargs or {}))


def counted(fn) -> int:
    with MatrixProducts() as counter:
        fn()
    return counter.flops


def test_product_flops_match_the_code():
    cfg = preset_config("mnist-dfc-ssa", layer_sizes=[784, 24, 16, 10], dtype="float64",
                        activations=["tanh", "tanh", "linear"])
    g = torch.Generator().manual_seed(0)
    net = DFCNetwork.from_config(cfg, g)
    batch = 5
    x = torch.randn(batch, 784, generator=g, dtype=torch.float64)

    def bp_step():
        _, rs = net.feedforward(x)
        rs[-1].square().sum().backward()

    bp, sleep = product_flops(cfg)
    assert counted(bp_step) == batch * bp
    phase = counted(lambda: feedback_update(net, x, SleepParams.from_config(cfg), g))
    assert phase * cfg.sleep_epochs == batch * sleep
    # the MNIST network: a BP step, and one epoch's three sleep passes of 47 steps each
    forward = 2 * (784 * 256 + 2 * 256 * 256 + 256 * 10)
    step = 2 * (2 * 256 * 256 + 256 * 10) + 2 * 2 * 778 * 10
    bp_step_mnist = 2 * forward + 2 * (2 * 256 * 256 + 256 * 10)
    assert product_flops(preset_config("mnist-dfc-ssa")) == (bp_step_mnist,
                                                              3 * (forward + 47 * step))
    assert product_flops(preset_config("mnist-bp"))[1] == 0


def test_expected_sleep_product_flops_match_the_code(monkeypatch):
    """An epoch's expected sleep passes, leading terms: once per sample the forward pass, the
    Jacobian and J Σ² Jᵀ (FeedbackJacobians), then per pass J Q, Jᵀ Y and the 2n_L × 2n_L
    algebra around the Lyapunov solve (left out). These are the products executed, with the
    per-minibatch Q Σ_b E[w uᵀ] (2.6% at batch 4, 0.1% at the presets' 128) added."""
    from dfc_analog.learning import sleep_expected
    cfg = preset_config("mnist-dfc-ssa-exp", dtype="float64")
    g = torch.Generator().manual_seed(0)
    net = DFCNetwork.from_config(cfg, g)
    batch = 4
    x = torch.randn(batch, 784, generator=g, dtype=torch.float64)
    monkeypatch.setattr(sleep_expected, "cayley_lyapunov", lambda h, R, F: torch.zeros_like(R))
    p = SleepParams.from_config(cfg)
    kept = []
    epoch = counted(lambda: kept.append(sleep_expected.FeedbackJacobians(net, x, p)))
    for _ in range(cfg.sleep_epochs):
        epoch += counted(lambda: kept[0].update(net, torch.arange(batch), p))
    per_minibatch = cfg.sleep_epochs * 2 * sum(cfg.layer_sizes[1:]) * cfg.layer_sizes[-1] ** 2
    assert epoch == batch * product_flops(cfg)[1] + per_minibatch
    # without the kept Jacobians one pass costs the forward pass and the Jacobian again
    single = counted(lambda: sleep_expected.expected_feedback_update(net, x, p))
    assert single * cfg.sleep_epochs > 2.5 * epoch


def test_single_phase_ssa_flops_match_the_code(monkeypatch):
    """The single-phase DFC-SSA minibatch's count (``bench/ssa_minibatch.py``) is the products
    the training loop executes, the Lyapunov solve left out, up to the per-minibatch
    Q Σ_b E[w uᵀ] (0.5 % at batch 16)."""
    from dfc_analog.learning import sleep_expected
    from dfc_analog.learning.forward import ForwardSettings
    cfg = preset_config("mnist-dfc-ssa-exp-single", dtype="float64",
                        layer_sizes=[784, 64, 48, 32, 10])
    g = torch.Generator().manual_seed(0)
    net = DFCNetwork.from_config(cfg, g)
    batch = 16
    x = torch.rand(batch, 784, generator=g, dtype=torch.float64)
    y = torch.randint(10, (batch,), generator=g)
    monkeypatch.setattr(sleep_expected, "cayley_lyapunov", lambda h, R, F: torch.zeros_like(R))
    p, settings = SleepParams.from_config(cfg), ForwardSettings.from_config(cfg)

    executed = counted(lambda: sleep_expected.single_phase_ssa_update(net, x, y, settings, p))
    expected = batch * ssa_minibatch.ssa_flops(cfg)
    assert expected <= executed < 1.01 * expected


def test_overlapped_single_phase_gives_the_sequential_weights():
    """``bench/ssa_minibatch.py --overlap``: the feedback update on a second thread while the
    forward update runs leaves W, b and Q bit for bit where the training loop's sequential
    minibatch does (neither update reads what the other writes)."""
    from concurrent.futures import ThreadPoolExecutor

    from dfc_analog.learning.forward import ForwardSettings
    from dfc_analog.learning.sleep_expected import single_phase_ssa_update
    from dfc_analog.training.loop import (apply_feedback_update, apply_update,
                                          make_feedback_optimizer, make_optimizer)
    cfg = preset_config("mnist-dfc-ssa-exp-single", layer_sizes=[784, 48, 32, 24, 10])
    nets = [DFCNetwork.from_config(cfg, torch.Generator().manual_seed(1)) for _ in range(2)]
    opts = [(make_optimizer(cfg, n), make_feedback_optimizer(cfg, n, cfg.fb_lr)) for n in nets]
    g = torch.Generator().manual_seed(2)
    settings, p = ForwardSettings.from_config(cfg), SleepParams.from_config(cfg)
    with ThreadPoolExecutor(1) as pool:
        for _ in range(3):
            x = torch.rand(32, 784, generator=g)
            y = torch.randint(10, (32,), generator=g)
            upd, g_Q = single_phase_ssa_update(nets[0], x, y, settings, p)
            apply_update(cfg, nets[0], opts[0][0], upd)
            apply_feedback_update(cfg, nets[0], opts[0][1], g_Q)
            ssa_minibatch.overlapped_minibatch(cfg, nets[1], x, y, settings, p, *opts[1], pool)
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert torch.equal(a, b), name


def test_ssa_minibatch_bench_runs_its_variants(capsys):
    threads = torch.get_num_threads()
    try:
        ssa_minibatch.main(["--repeats", "1", "--adam", "fused", "--overlap"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "fused Adam" in out and "overlapped on two threads" in out
    assert out.splitlines()[-1].startswith("RESULT ssa_single_vs_bp=")

def test_single_phase_preset_is_the_benched_configuration(monkeypatch):
    """``mnist-dfc-single`` holds what ``bench/single_phase.py --mnist --pretrain-epochs 10
    --single-sigma 2e-4 --single-lambda 0.5 --fb-delay 5`` measured (README), to the preset's
    four digits."""
    args = argparse.Namespace(mnist=True, epochs=5, train_samples=2000, single_sigma=2e-4,
                              single_lambda=0.5, pretrain_epochs=10, fb_delay=5.0,
                              fb_lr_factor=1.0, threads=1, seed=42, sigma=0.003)
    if not single_phase.MNIST_DIR.is_dir():     # the digits are not read, only the settings
        monkeypatch.setattr(single_phase, "MNIST_DIR", Path(__file__).resolve().parent)
    benched = single_phase.config(args, "single-phase")
    preset = preset_config("mnist-dfc-single")
    for name in ("schedule", "solver", "step_size", "target_stepsize", "lr", "sigma_fb",
                 "sigma_fb_output", "fb_weight_decay", "fb_adam_eps", "fb_delay", "fb_lr",
                 "sleep_epochs_init", "tau_hp", "alpha", "k_p", "t_end"):
        a, b = getattr(benched, name), getattr(preset, name)
        assert a == b if isinstance(a, str) else math.isclose(a, b, rel_tol=1e-3), name


def test_solver_tolerance_bench_runs(capsys):
    """``bench/solver_tolerance.py`` compares a preset's DFC update at a loose tolerance with a
    tight float64 solve and ends with its RESULT line."""
    import solver_tolerance
    assert solver_tolerance.main(["--presets", "mnist-train-loss-dfc", "--batch", "4",
                                  "--rtols", "1e-2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    angle = float(out.split("RESULT worst_angle_deg=")[1].split()[0])
    assert 0 <= angle < 1.0 and "at_rtol=0.01" in out


def test_mnist_table_over_seeds_reports_means_and_paired_differences(capsys):
    """With several seeds the MNIST bench reports each method's mean ± sample std, differences
    paired by seed and time ratios as medians over the seeds; the RESULT line holds the means."""
    def run(value, last, wake, sleep=0.0):
        return dict(value=value, last=last, wake=wake, sleep=sleep, epoch=3, nfe=0.0,
                    metric="test error", flops=(1, 0))
    runs = {"bp": {1: run(5.0, 5.2, 1.0), 2: run(6.0, 5.4, 2.0), 3: run(5.5, 5.3, 1.0)},
            "dfc-exp": {1: run(5.5, 5.1, 20.0, 5.0), 2: run(6.1, 5.5, 48.0, 12.0),
                        3: run(5.3, 5.3, 30.0, 6.0)},
            "dfc": {1: run(6.0, 5.2, 60.0, 20.0), 2: run(5.9, 5.6, 100.0, 40.0),
                    3: run(5.4, 5.0, 70.0, 10.0)},
            "dfc-ssa-exp": {1: run(5.1, 5.0, 3.0, 4.0), 2: run(5.9, 5.5, 6.0, 8.0),
                            3: run(5.6, 5.4, 3.0, 4.0)}}
    assert report(runs, epochs=20, n_seeds=3, autoencoder=False) == 0
    out = capsys.readouterr().out
    # dfc-exp - bp per seed: +0.5, +0.1, -0.2 (mean 0.133, std 0.351); dfc-exp - dfc: -0.5,
    # +0.2, -0.1 (mean -0.133, std 0.351); whole epochs 25, 30, 36 BP epochs (median 30)
    line = next(x for x in out.splitlines() if x.startswith("dfc-exp:"))
    assert "whole epoch 30.00x BP's" in line and "wake 24.00x" in line, line
    assert "+0.13 ± 0.35 points from BP's" in line, line
    assert "-0.13 ± 0.35 points from its simulated-sleep twin" in line, line
    assert "5.50±0.50%" in out and "5.63±0.42%" in out, out
    assert out.splitlines()[-1] == ("RESULT bp=5.50 dfc_ssa_exp=5.53 dfc_exp=5.63 "
                                    "ssa_exp_time_ratio=7.00 dfc_exp_time_ratio=30.00")


def test_hardware_bench_simulates_the_inference_layer_by_layer(capsys):
    """``bench/hardware.py``'s path for the large network on the small one: the inference in one
    ngspice run per layer, agreeing with the emulation; without the wake transient the RESULT
    line says wake_tran_s=nan."""
    from tests.test_validate import ngspice_missing
    if ngspice_missing():
        pytest.skip("libngspice is not installed")
    import hardware
    r = hardware.bench([15, 10, 10, 5], 1.0, by_layers=True, wake=False)
    out = capsys.readouterr().out
    assert "ngspice layer by layer (3 runs)" in out and "ngspice not run" in out, out
    assert r["inference_err"] <= 1e-3 and r["inference_within"]
    assert abs(r["model_energy"].per_inference / r["circuit_energy"].per_inference - 1) < 0.1
    line = hardware.result_line(r)
    assert line.startswith("RESULT emul_err=") and "wake_tran_s=nan" in line, line
