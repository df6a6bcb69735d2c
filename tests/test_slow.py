"""Long checks, run with `make test-slow`: the default training run and the MNIST-size network."""
import math

import pytest
import torch

from dfc_analog import (Config, ControllerParams, DFCNetwork, ForwardSettings, SolverSettings,
                        forward_update)
from dfc_analog import run_training

from tests.conftest import angle_deg, update_vector

pytestmark = pytest.mark.slow


def test_default_training_run(tmp_path):
    """`make train` as shipped: DFC, 40 epochs; measured 54.5 -> 15.7 test loss."""
    rows = run_training(Config(), tmp_path / "run", progress=False)
    assert rows[-1]["test_loss"] < 0.35 * rows[0]["test_loss"]
    assert all(math.isfinite(r["test_loss"]) for r in rows)


def test_mnist_size_update_matches_the_authors_scheme():
    """784-256-256-256-10 with the authors' MNIST DFC settings (T = 20 τ_u): the default dopri5
    update agrees with a tight solve and with the authors' Euler scheme at Δt = 0.02."""
    gen = torch.Generator().manual_seed(0)
    net = DFCNetwork([784, 256, 256, 256, 10], ["tanh"] * 3 + ["linear"], generator=gen,
                     dtype=torch.float64)
    x = torch.randn(64, 784, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    params = ControllerParams(tau_v=0.2, alpha=0.001389, k_p=2.0, leak="total")
    common = dict(t_end=20.0, loss="cross_entropy", reduction="mean", target_stepsize=0.07794)
    default = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings(), **common)))
    tight = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params,
                                         SolverSettings("dopri5", 1e-6, 1e-8), **common)))
    euler = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params,
                                         SolverSettings("authors-euler", step_size=0.02),
                                         **common)))
    assert angle_deg(default, tight) < 0.5
    assert angle_deg(default, euler) < 1.0
