"""Theory diagnostics against slow, direct per-sample computations, and stability on the toy task."""
import numpy as np
import pytest
import torch

from dfc_analog import Config, ControllerParams, run_training
from dfc_analog.model.dynamics import WakeDynamics
from dfc_analog.learning import output_target, task_loss
from dfc_analog.theory import condition1, gn_update, mn_update, pi_system_matrix


def per_sample_parameter_jacobian(net, x_s):
    """J_θ of r_L for one sample by autograd, columns ordered W_1..W_L, b_1..b_L."""
    params = list(net.W) + list(net.b)
    shapes = [p.shape for p in params]

    def output(flat):
        pieces = torch.split(flat, [int(np.prod(s)) for s in shapes])
        Ws = [p.reshape(s) for p, s in zip(pieces[:net.num_layers], shapes)]
        bs = pieces[net.num_layers:]
        r = x_s
        for i in range(net.num_layers):
            r = net.phi(i, Ws[i] @ r + bs[i])
        return r
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.jacobian(output, flat), shapes


def test_gn_update_matches_explicit_per_sample_computation(make_net, batch):
    net = make_net()
    x, y = batch(B=5)
    gW, gb = gn_update(net, x, y, "mse", damping=0.1)
    fast = torch.cat([t.reshape(-1) for t in gW + gb])
    r_L = net.feedforward(x)[1][-1]
    g = torch.autograd.grad(task_loss(r_L, y, "mse"), r_L)[0]        # batch-loss gradient
    slow = 0
    for s in range(5):
        J, _ = per_sample_parameter_jacobian(net, x[s])
        slow = slow + J.T @ torch.linalg.solve(J @ J.T + 0.1 * torch.eye(5, dtype=J.dtype), g[s])
    torch.testing.assert_close(fast, slow / 5)


def test_mn_update_matches_per_sample_loop(make_net, batch):
    net = make_net()
    x, y = batch(B=4)
    gW, gb = mn_update(net, x, y, "mse", damping=0.1)
    v_ff, r_ff = net.feedforward(x)
    J = net.jacobian(v_ff).detach()
    r_L = r_ff[-1]
    g = torch.autograd.grad(task_loss(r_L, y, "mse"), r_L)[0]
    expected_W = [torch.zeros_like(w) for w in gW]
    for s in range(4):
        dv = J[s].T @ torch.linalg.solve(J[s] @ J[s].T + 0.1 * torch.eye(5, dtype=J.dtype), g[s])
        r_prev = x[s]
        for i, d in enumerate(net.split_layers(dv)):
            v = v_ff[i][s].detach()
            expected_W[i] += torch.outer(net.phi(i, v + d) - net.phi(i, v), r_prev) / 4
            r_prev = r_ff[i][s].detach()
    for a, b in zip(gW, expected_W):
        torch.testing.assert_close(a, b)


def test_condition1_matches_numpy(make_net, batch):
    net = make_net()
    x, _ = batch(B=3)
    _, rs = net.feedforward(x)
    for s in range(3):
        norms = np.array([np.linalg.norm(a[s].detach().numpy()) for a in [x] + rs[:-1]])
        assert condition1(net, x)[s].item() == pytest.approx(norms.std() / norms.mean())


@pytest.mark.parametrize("leak", ["integral", "total"])
def test_pi_system_matrix_is_the_jacobian_of_the_vector_field(make_net, batch, leak):
    """A of the linearised eqs. (1), (4) equals the finite-difference Jacobian of the very vector
    field the solvers integrate, per sample, at a state away from the feed-forward one."""
    net = make_net()
    x, y = batch(B=3)
    params = ControllerParams(tau_v=0.2, alpha=0.3, k_p=1.5, leak=leak)
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x)
        r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.1)
        dyn = WakeDynamics(net, x, r_star, params, v_ff)
        y0 = 0.3 * torch.randn(dyn.initial_state().shape, dtype=torch.float64,
                               generator=torch.Generator().manual_seed(0))
        vs, _ = dyn.split(y0)
        A = pi_system_matrix(net, vs, params)
        n = y0.shape[1]
        eps = 1e-6
        numeric = torch.zeros_like(A)
        for j in range(n):
            e = torch.zeros_like(y0)
            e[:, j] = eps / dyn.scale       # the state is scaled; the Jacobian is scale-free
            numeric[:, :, j] = (dyn(0.0, y0 + e) - dyn(0.0, y0 - e)) * dyn.scale / (2 * eps)
    torch.testing.assert_close(A, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method,trained", [("dfc", False), ("dfc-ss", False), ("dfc-ssa", False),
                                            ("dfc", True), ("dfc-ss", True), ("dfc-ssa", True)])
def test_every_variant_stays_stable_on_the_toy_task(tmp_path, method, trained):
    """Fig. 3E: the largest real eigenvalue of the PI system, and of Condition 3, stay negative."""
    cfg = Config(method=method, train_feedback=trained, sleep_epochs_init=5 if trained else 0,
                 sleep_epochs=1, train_samples=640, val_samples=128, test_samples=128, epochs=3)
    rows = run_training(cfg, tmp_path / "run", progress=False)
    for r in rows:
        assert r["max_eig_pi"] < 0 and r["max_eig_condition3"] < 0, r
