"""The Rosenbrock-W solver (ROS34PW2): exact solutions, its stiff operator, and the wake phase."""
import math

import pytest
import torch

from dfc_analog import (ControllerParams, ForwardSettings, SolverSettings, forward_update,
                        output_target)
from dfc_analog.model import dynamics
from dfc_analog.model.dynamics import WakeDynamics
from dfc_analog.solvers.rosenbrock import rosenbrock_w
from dfc_analog.theory import pi_system_matrix

from tests.conftest import angle_deg, update_vector


def _dense(A):
    """solve(b, scale, out) = (I - cA)⁻¹ scale b of a fixed dense matrix A, for a batch of row
    vectors."""
    def stiff(y, c):
        M = torch.eye(A.shape[0], dtype=A.dtype) - c * A
        return lambda b, scale=1.0, out=None: _into(out, torch.linalg.solve(M, scale * b.T).T)
    return stiff


def _into(out, value):
    return value if out is None else out.copy_(value)


def _field(g):
    """The solver's f(t, y, out) of a plain right-hand side g(y)."""
    return lambda t, y, out=None: _into(out, g(y))


def _count(n):
    return lambda *step: n.append(step)


def test_linear_stiff_oscillatory_system_against_the_matrix_exponential():
    """y' = My with a stiff mode (-1000) and a damped oscillation (-1 ± 5i), exact solution
    exp(Mt) y0. With A = M (Rosenbrock) and with A = only the stiff mode (a W-method: the order
    does not depend on A) the error stays within a small multiple of the tolerance."""
    M = torch.tensor([[-1000.0, 0, 0], [0, -1.0, 5.0], [0, -5.0, -1.0]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    times = [0.0, 0.5, 1.0, 2.0]
    exact = torch.stack([y0 @ torch.matrix_exp(M * t).T for t in times])
    stiff_only = torch.zeros_like(M)
    stiff_only[0, 0] = -1000.0
    for A in (M, stiff_only):
        for tol in (1e-4, 1e-7):
            steps = []
            out = rosenbrock_w(_field(lambda y: y @ M.T), _dense(A), y0, times, tol, tol, 100000,
                               _count(steps))
            assert float((out - exact).abs().max()) < 30 * tol
            # the stiff mode sets no step limit: an explicit method needs h < 3/1000, 700 steps
            assert tol < 1e-4 or len(steps) < 100


def test_third_order_convergence_on_a_nonlinear_problem():
    """y' = -y², y(t) = y0 / (1 + y0 t), with A = 0: the error falls as tol^(3/4) at least
    (order 3 with an order-2 error estimate) and the steps grow as tol^(-1/3)."""
    y0 = torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    exact = y0 / (1 + y0 * 3.0)
    stiff = _dense(torch.zeros(2, 2, dtype=torch.float64))
    errors, counts = [], []
    for tol in (1e-4, 1e-6, 1e-8):
        steps = []
        out = rosenbrock_w(_field(lambda y: -y * y), stiff, y0, [0.0, 3.0], tol, tol, 100000,
                           _count(steps))
        errors.append(float((out[-1] - exact).abs().max()))
        counts.append(len(steps))
    assert errors[0] < 1e-3 and errors[2] < 1e-7
    assert errors[0] / errors[2] > 1e3
    assert 2 < counts[2] / counts[0] < 40


@pytest.fixture
def wake_problem(make_net, batch):
    def make(leak="integral", output="linear", seed=0):
        net = make_net(activations=["tanh", "tanh", output], seed=seed)
        x, y = batch(B=6, seed=seed + 1)
        params = ControllerParams(tau_v=0.2, alpha=0.05, k_p=2.0, leak=leak)
        with torch.no_grad():
            v_ff, r_ff = net.feedforward(x)
            r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.05)
        return net, x, y, params, WakeDynamics(net, x, r_star, params, v_ff)
    return make


def _stiff_residual(dyn, solve, A, c, shape):
    b = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    z = solve(b, 0.5)
    residual = z - c * (A @ z.unsqueeze(2)).squeeze(2) - 0.5 * b
    return float(residual.abs().max()) / float(b.abs().max())


@pytest.mark.parametrize("leak,output", [("integral", "linear"), ("total", "tanh")])
@torch.no_grad()
def test_stiff_part_is_the_jacobian_at_the_feedforward_state(wake_problem, leak, output):
    """solve() inverts I - cA, A the linearised PI system (theory.pi_system_matrix) at the
    feed-forward state, feed-forward coupling W_i φ'(v_{i-1}) included, wherever it is asked."""
    net, x, _, params, dyn = wake_problem(leak, output)
    y = torch.randn(dyn.origin.shape, dtype=torch.float64, generator=torch.Generator()
                    .manual_seed(3)) * 0.3
    c = 0.37
    A = pi_system_matrix(net, dyn.split(torch.zeros_like(y))[0], params)
    assert _stiff_residual(dyn, dyn.stiff_part(y, c), A, c, y.shape) < 1e-12


@pytest.mark.parametrize("leak,output", [("integral", "linear"), ("total", "tanh")])
@torch.no_grad()
def test_stiff_part_of_wide_outputs_drops_the_feedforward_coupling(wake_problem, leak, output,
                                                                   monkeypatch):
    """Above COUPLED_MAX_OUTPUTS output neurons, solve() inverts I - cA with A the linearised PI
    system at the current state without the blocks W_i φ'(v_{i-1})."""
    monkeypatch.setattr(dynamics, "COUPLED_MAX_OUTPUTS", 0)
    net, x, _, params, dyn = wake_problem(leak, output)
    y = torch.randn(dyn.origin.shape, dtype=torch.float64, generator=torch.Generator()
                    .manual_seed(3)) * 0.3
    c = 0.37
    A = pi_system_matrix(net, dyn.split(y)[0], params)
    n = dyn.offsets
    for i in range(1, net.num_layers):      # drop the block sub-diagonal W_i φ'(v_{i-1}) / τ_v
        A[:, n[i]:n[i + 1], n[i - 1]:n[i]] = 0
    assert _stiff_residual(dyn, dyn.stiff_part(y, c), A, c, y.shape) < 1e-12


def test_wake_update_agrees_with_a_tight_dopri5_solve(wake_problem):
    """The default solver's DFC update is within 0.1° of a tight dopri5 solve, with fewer
    vector-field evaluations than dopri5 at the same tolerances."""
    net, x, y, _, _ = wake_problem()
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=2.0)
    common = dict(t_end=10.0, loss="mse", reduction="mean", target_stepsize=0.05)
    tight = forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings("dopri5", 1e-9, 1e-11),
                           **common))
    ours = forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings(), **common))
    explicit = forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings("dopri5"), **common))
    assert SolverSettings().method == "rosenbrock"
    assert angle_deg(update_vector(ours), update_vector(tight)) < 0.1
    assert ours.wake.nfe < 0.7 * explicit.wake.nfe
    with torch.no_grad():
        v_ff, _ = net.feedforward(x)
    for a, b, v0 in zip(ours.wake.v, tight.wake.v, v_ff):   # final departures from eq. (2)
        assert float((a - b).abs().max()) < 1e-2 * float((b - v0).abs().max())


@torch.no_grad()
def test_trajectory_output_times_follow_the_ode(wake_problem):
    """Output times come from the cubic Hermite interpolant: they agree with a tight solve to
    the tolerance, in units of the output nudge."""
    net, x, _, params, dyn = wake_problem()
    from dfc_analog import simulate_wake
    times = torch.linspace(0, 5, 37, dtype=torch.float64)
    tight = simulate_wake(net, x, dyn.r_star, params, SolverSettings("dopri5", 1e-10, 1e-12),
                          5.0, times=times).trajectory
    ours = simulate_wake(net, x, dyn.r_star, params, SolverSettings("rosenbrock", 1e-5, 1e-7),
                         5.0, times=times).trajectory
    nudge = float((dyn.r_star - tight.rate[-1][0]).abs().max())
    for a, b in zip(ours.soma + [ours.u], tight.soma + [tight.u]):
        assert float((a - b).abs().max()) < 1e-3 * nudge
    assert math.isclose(float(ours.t[-1]), 5.0)


@torch.no_grad()
def test_the_feedforward_coupling_in_the_stiff_part_saves_steps(make_net, batch, monkeypatch):
    """With the layers' coupling W_i φ'(v_{i-1}) in A, the wake phase of a deeper network takes
    far fewer evaluations than with the controller loop alone (measured: 106 against 260)."""
    net = make_net(sizes=(15, 40, 40, 40, 5))
    x, y = batch(B=32)
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=2.0)
    _, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1], y, "mse", "mean", 0.05)
    from dfc_analog import simulate_wake
    coupled = simulate_wake(net, x, r_star, params, SolverSettings(), 20.0, accumulate=True)
    monkeypatch.setattr(dynamics, "COUPLED_MAX_OUTPUTS", 0)
    loop_only = simulate_wake(net, x, r_star, params, SolverSettings(), 20.0, accumulate=True)
    assert coupled.nfe < 0.6 * loop_only.nfe
    assert angle_deg(coupled.d + coupled.M, loop_only.d + loop_only.M) < 0.5


@torch.no_grad()
def test_stiff_part_of_a_single_layer_network(make_net, batch):
    """With one layer there is no feed-forward coupling: A is the leak and the controller loop."""
    net = make_net(sizes=(15, 5), activations=["tanh"])
    x, y = batch()
    params = ControllerParams(tau_v=0.2, alpha=0.05, k_p=2.0)
    v_ff, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.05)
    dyn = WakeDynamics(net, x, r_star, params, v_ff)
    y0 = torch.zeros_like(dyn.origin)
    A = pi_system_matrix(net, dyn.split(y0)[0], params)
    assert _stiff_residual(dyn, dyn.stiff_part(y0, 0.37), A, 0.37, y0.shape) < 1e-12


def test_the_last_step_is_no_sliver():
    """A step that would stop short of the end by less than STRETCH of itself is stretched to
    the end: the last step is longer than STRETCH times the one before it, and the solution
    stays within the tolerance of the exact one."""
    from dfc_analog.solvers.rosenbrock import STRETCH
    y0 = torch.tensor([[1.0]], dtype=torch.float64)
    for t_end in (1.0, 3.7, 10.0, 19.98):
        steps = []
        out = rosenbrock_w(_field(lambda y: -y / (1.0 + 0.1 * y)), _dense(torch.zeros(1, 1, dtype=torch.float64)), y0,
                           [0.0, t_end], 1e-3, 1e-6, 10000, _count(steps))
        (t_last, h_last, _), (_, h_before, _) = steps[-1], steps[-2]
        assert math.isclose(t_last + h_last, t_end, rel_tol=1e-12)
        assert h_last > STRETCH * h_before
        # ln y + 0.1 y = 0.1 - t: the exact solution by Newton's method
        z = math.exp(-t_end)
        for _ in range(50):
            z -= (math.log(z) + 0.1 * z - 0.1 + t_end) / (1.0 / z + 0.1)
        assert abs(float(out[-1, 0, 0]) - z) < 10 * (1e-3 * z + 1e-6)


@pytest.mark.parametrize("name", ["mnist-dfc", "fashion-mnist-dfc-fixed",
                                  "mnist-train-loss-dfc"])
def test_dfc_presets_tolerance_keeps_the_update(name, one_thread):
    """The DFC presets' loose tolerances (rtol 1e-2, atol 1e-3): the eq. (5) time integral, in
    float32, stays within 2 % and 1° (the wake-phase goal's angle) of a float64 solve at rtol
    1e-8, with the presets' controller and phase length. Measured here: 0.05–0.35° (0.01–0.11° at
    rtol 1e-3); on the full networks 0.02–0.17° (README, Solver tolerance of the DFC presets)."""
    from dfc_analog import DFCNetwork
    from dfc_analog.config.presets import preset_config
    cfg = preset_config(name, layer_sizes=[784, 64, 64, 64, 10])
    assert (cfg.rtol, cfg.atol) == (1e-2, 1e-3)
    params = ControllerParams.from_config(cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=gen, dtype=torch.float64) * 2 - 0.5
    y = torch.randint(0, 10, (64,), generator=gen)
    common = dict(t_end=cfg.t_end, loss=cfg.loss, reduction=cfg.loss_reduction,
                  target_stepsize=cfg.target_stepsize)
    net = DFCNetwork.from_config(cfg.replace(dtype="float64"))
    tight = forward_update(net, x, y, ForwardSettings("dfc", params,
                                                      SolverSettings("rosenbrock", 1e-8, 1e-9),
                                                      **common))
    ours = forward_update(net.float(), x.float(), y,
                          ForwardSettings("dfc", params, SolverSettings.from_config(cfg), **common))
    a = torch.cat([t.double().reshape(-1) for t in update_vector(ours)])
    b = torch.cat([t.reshape(-1) for t in update_vector(tight)])
    assert float((a - b).norm() / b.norm()) < 2e-2
    assert angle_deg(update_vector(ours), update_vector(tight)) < 1.0
