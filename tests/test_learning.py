"""The output target of eq. (3), the loss gradients it is built from, and the forward rules read
off any phase source (the phase contract)."""
import pytest
import torch

from dfc_analog.learning import loss_gradient, output_target, task_loss


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_loss_gradient_matches_autograd(loss):
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 4, generator=gen, dtype=torch.float64) if loss == "mse" else \
        torch.randint(0, 4, (6,), generator=gen)
    # 'mean': the gradient of the minibatch-mean loss, as torch reduces it
    (mean_grad,) = torch.autograd.grad(task_loss(r, y, loss), r)
    torch.testing.assert_close(loss_gradient(r.detach(), y, loss, "mean"), mean_grad)
    # 'sample': each sample's own loss, ‖r - y‖² or -log softmax(r)_y
    per_sample = ((r - y) ** 2).sum() if loss == "mse" else \
        torch.nn.functional.cross_entropy(r, y, reduction="sum")
    (sample_grad,) = torch.autograd.grad(per_sample, r)
    torch.testing.assert_close(loss_gradient(r.detach(), y, loss, "sample"), sample_grad)


def test_l2_target_is_the_convex_combination_of_eq3():
    """For the L2 loss, eq. (3) gives r_L* = (1 - 2λ) r_L^- + 2λ y."""
    r = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(5, 3, dtype=torch.float64)
    r_star, delta = output_target(r, y, "mse", "sample", 0.1)
    torch.testing.assert_close(r_star, 0.8 * r + 0.2 * y)
    torch.testing.assert_close(delta, r_star - r)


def test_mean_reduction_scales_the_nudge_by_the_batch():
    """The authors' convention: δ_L is λ/B (cross-entropy) or 2λ/(B n_L) (MSE) times the error."""
    r = torch.randn(8, 10, dtype=torch.float64)
    labels = torch.randint(0, 10, (8,))
    _, d_mean = output_target(r, labels, "cross_entropy", "mean", 0.07794)
    _, d_sample = output_target(r, labels, "cross_entropy", "sample", 0.07794)
    torch.testing.assert_close(d_mean, d_sample / 8)
    y = torch.randn(8, 10, dtype=torch.float64)
    _, m_mean = output_target(r, y, "mse", "mean", 0.05)
    torch.testing.assert_close(m_mean, -0.05 * 2 * (r - y) / 80)


def ode_source(net, x, r_star, params, t_end, times):
    """A phase source that is the ODE itself, at tight tolerances, read on ``times``."""
    from dfc_analog import SolverSettings, simulate_wake
    solver = SolverSettings("dopri5", rtol=1e-9, atol=1e-9, max_steps=1_000_000)
    return simulate_wake(net, x, r_star, params, solver, t_end, times=times).trajectory


def test_forward_rules_read_any_phase_source(make_net, batch):
    """The phase contract: DFC and DFC-SS from a source's Trajectory (eq. 5 by the trapezoidal
    rule on its grid) equal the rules on the solver's own integral and final state."""
    from dfc_analog import ControllerParams, ForwardSettings, SolverSettings, forward_update
    from dfc_analog.learning import angle_deg
    net = make_net()
    x, y = batch(B=4)
    tight = SolverSettings("dopri5", rtol=1e-9, atol=1e-9, max_steps=1_000_000)
    for method in ("dfc", "dfc-ss"):
        settings = ForwardSettings(method, ControllerParams(), tight, 5.0, "mse", "sample", 0.05,
                                   points=2001)
        own = forward_update(net, x, y, settings)
        read = forward_update(net, x, y, settings, source=ode_source)
        # the trapezoidal rule on 2001 points: error ~ (T/2000)² ≈ 1e-5 of the largest entry
        assert angle_deg(own.gW + own.gb, read.gW + read.gb) < 0.01
        for a, b in zip(own.gW + own.gb, read.gW + read.gb):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * float(a.abs().max()))


@pytest.mark.parametrize("method", ["dfc", "dfc-ss", "dfc-ssa"])
def test_float32_gives_the_float64_update_of_every_rule(make_net, method):
    """With outputs as large as a trained classifier's (up to ~10) and a nudge of ~1e-4, every
    forward rule's float32 update is within 0.01° of its float64 update at the same solver
    settings: the nudge, the steady state and the sweep are read as departures (README,
    Precision). Formed from absolute values they were 0.1–1.3° apart on a trained MNIST net."""
    from dfc_analog import ControllerParams, ForwardSettings, SolverSettings, forward_update
    from tests.conftest import angle_deg, update_vector
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(64, 100, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (64,), generator=gen)
    settings = ForwardSettings(method, ControllerParams(tau_v=0.2, alpha=0.0014, k_p=2.0,
                                                        leak="total"),
                               SolverSettings("rosenbrock", 1e-3, 1e-4), 20.0, "cross_entropy",
                               "mean", 0.078)
    updates = []
    for dtype in (torch.float64, torch.float32):
        net = make_net(sizes=(100, 64, 64, 10), dtype=torch.float64)
        with torch.no_grad():
            net.W[-1].mul_(12.0)
            net.b[-1].add_(4.0)
        updates.append(forward_update(net.to(dtype), x.to(dtype), y, settings))
    assert angle_deg(update_vector(updates[1]), update_vector(updates[0])) < 1e-2
