"""simulate_wake: trajectories, the authors' Euler scheme, the solver guards."""
import pytest
import torch

from dfc_analog import (ControllerParams, DivergenceError, SolverSettings, output_target,
                        simulate_wake)

PARAMS = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)


@pytest.fixture
def setup(make_net, batch):
    net = make_net()
    x, y = batch(B=8)
    with torch.no_grad():
        _, r_ff = net.feedforward(x)
        r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.05)
    return net, x, r_star


def test_trajectory_starts_feedforward_and_ends_at_final_state(setup):
    net, x, r_star = setup
    times = torch.linspace(0, 5, 51, dtype=torch.float64)
    wake = simulate_wake(net, x, r_star, PARAMS, SolverSettings("dopri5", 1e-8, 1e-10), 5.0,
                         times=times)
    tr = wake.trajectory
    assert tr.t.shape == (51,) and tr.soma[0].shape == (51, 8, 10) and tr.u.shape == (51, 8, 5)
    v_ff, r_ff = net.feedforward(x)
    for i in range(net.num_layers):
        torch.testing.assert_close(tr.soma[i][0], v_ff[i].detach())
        torch.testing.assert_close(tr.soma[i][-1], wake.v[i])
        torch.testing.assert_close(tr.rate[i], net.phi(i, tr.soma[i]))
        torch.testing.assert_close(tr.apical[i], tr.u @ net.Q[i].detach().T)
    torch.testing.assert_close(tr.error[0], r_star - r_ff[-1].detach())
    torch.testing.assert_close(tr.u, tr.u_int + PARAMS.k_p * tr.error)
    assert float(tr.u_int[0].abs().max()) == 0.0
    arrays = tr.numpy()
    assert {"t", "soma1", "basal3", "apical2", "rate3", "u", "u_int", "error"} <= set(arrays)


def test_authors_euler_trajectory_follows_the_ode(setup):
    net, x, r_star = setup
    times = torch.linspace(0, 5, 11, dtype=torch.float64)
    ode = simulate_wake(net, x, r_star, PARAMS, SolverSettings("dopri5", 1e-8, 1e-10), 5.0,
                        times=times).trajectory
    euler = simulate_wake(net, x, r_star, PARAMS, SolverSettings("authors-euler",
                                                                 step_size=1e-3), 5.0,
                          times=times).trajectory
    torch.testing.assert_close(euler.t, ode.t)
    response = (ode.rate[-1] - ode.rate[-1][0]).abs().max()
    assert float((euler.rate[-1] - ode.rate[-1]).abs().max()) < 0.01 * float(response)


def test_float32_matches_float64(make_net, batch):
    out = {}
    for dtype in (torch.float32, torch.float64):
        net = make_net(dtype=dtype)
        x, y = (a.to(dtype) for a in batch(B=8))
        with torch.no_grad():
            _, r_ff = net.feedforward(x)
            r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.05)
        out[dtype] = simulate_wake(net, x, r_star, PARAMS, SolverSettings(), 5.0).u
    assert out[torch.float32].dtype == torch.float32
    rel = (out[torch.float32].double() - out[torch.float64]).norm() / out[torch.float64].norm()
    assert float(rel) < 1e-3


def test_step_limit_is_a_divergence_error(setup):
    net, x, r_star = setup
    with pytest.raises(DivergenceError, match="gave up"):
        simulate_wake(net, x, r_star, PARAMS, SolverSettings("dopri5", 1e-10, 1e-12,
                                                             max_steps=5), 5.0)


def test_unstable_controller_is_a_divergence_error(setup):
    net, x, r_star = setup
    # negative feedback turned positive: Q -> -Q violates Condition 3 and the state explodes
    with torch.no_grad():
        for q in net.Q:
            q.mul_(-5.0)
    with pytest.raises(DivergenceError):
        simulate_wake(net, x, r_star, PARAMS, SolverSettings(max_steps=2000), 200.0)


def test_fused_dopri5_takes_torchdiffeqs_steps(setup, monkeypatch):
    """'dopri5' is torchdiffeq's dopri5 with fused stage arithmetic: the same accepted steps,
    the same trajectory (dense output included) and the same eq. (5) integral."""
    from dfc_analog.model.dynamics import PlasticityIntegral
    net, x, r_star = setup
    times = torch.linspace(0, 5, 23, dtype=torch.float64)
    steps, runs = {}, {}
    add_step, add_node = PlasticityIntegral.add_step, PlasticityIntegral.add_node
    for method in ("dopri5", "torchdiffeq-dopri5"):
        steps[method] = log = []

        def record_step(self, t0, dt, y1, log=log):
            log.append((float(t0), float(dt)))
            return add_step(self, t0, dt, y1)

        def record_node(self, t0, y0, dt, log=log):
            log.append((float(t0), float(dt)))
            return add_node(self, t0, y0, dt)
        monkeypatch.setattr(PlasticityIntegral, "add_step", record_step)
        monkeypatch.setattr(PlasticityIntegral, "add_node", record_node)
        runs[method] = simulate_wake(net, x, r_star, PARAMS, SolverSettings(method, 1e-6, 1e-8),
                                     5.0, times=times, accumulate=True)
    fused, reference = runs["dopri5"], runs["torchdiffeq-dopri5"]
    assert fused.nfe == reference.nfe
    torch.testing.assert_close(torch.tensor(steps["dopri5"]),
                               torch.tensor(steps["torchdiffeq-dopri5"]), rtol=1e-7, atol=0)
    torch.testing.assert_close(fused.trajectory.soma[1], reference.trajectory.soma[1],
                               rtol=1e-9, atol=1e-12)
    for a, b in zip(fused.M + fused.d, reference.M + reference.d):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("acts", [["tanh", "tanh", "linear"], ["relu", "sigmoid", "tanh"],
                                  ["sigmoid", "tanh", "sigmoid"]])
@pytest.mark.parametrize("leak", ["integral", "total"])
def test_vector_field_is_equations_1_and_4(make_net, batch, acts, leak):
    """The departure-form vector field equals eqs. (1) and (4) written on absolute voltages,
    and the eq. (5) signal read back from it equals φ(v) - φ(W r + b)."""
    from dfc_analog.model.dynamics import WakeDynamics, plasticity_signals
    net = make_net(sizes=(6, 5, 4, 3), activations=acts)
    with torch.no_grad():
        for b in net.b:
            b.normal_(0, 0.3)
    x, y = batch(n_in=6, n_out=3, B=7)
    params = ControllerParams(tau_v=0.3, alpha=0.1, k_p=1.5, leak=leak)
    with torch.no_grad():
        v_ff, r_ff = net.feedforward(x)
        r_star, _ = output_target(r_ff[-1], y, "mse", "sample", 0.2)
        dyn = WakeDynamics(net, x, r_star, params, v_ff)
        y0 = torch.randn(7, 15, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        f = dyn(0.0, y0)
        vs, u_int = dyn.split(y0)
        rs = [net.phi(i, v) for i, v in enumerate(vs)]
        e = r_star - rs[-1]
        u = u_int + params.k_p * e
        basal = [net.basal(i, x if i == 0 else rs[i - 1]) for i in range(3)]
        dv = [(-vs[i] + basal[i] + u @ net.Q[i].T) / params.tau_v for i in range(3)]
        du = (e - params.alpha * (u_int if leak == "integral" else u)) / params.tau_u
        expected = torch.cat(dv + [du], dim=1) / dyn.scale
        torch.testing.assert_close(f, expected, rtol=1e-10, atol=1e-10)
        delta, pre = plasticity_signals(dyn, y0)
        want = torch.cat([rs[i] - net.phi(i, basal[i]) for i in range(3)], dim=1)
        torch.testing.assert_close(delta, want, rtol=1e-10, atol=1e-12)
        for got, r in zip(pre, [x] + rs[:-1]):
            torch.testing.assert_close(got, r)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "linear"])
def test_phi_departure_keeps_the_digits_of_small_departures(name):
    """φ(a + d) - φ(a) in float32 against float64: relative error near float32's eps even for
    d = 1e-6, where the plain difference keeps none of its digits."""
    from dfc_analog.model.network import _PHI, phi_departure
    a = torch.linspace(-2, 2, 101, dtype=torch.float64)
    a = a[a.abs() > 1e-3]
    for d in (1e-2, 1e-4, 1e-6):
        exact = phi_departure(name, a, _PHI[name][0](a), torch.full_like(a, d))
        a32 = a.float()
        got = phi_departure(name, a32, _PHI[name][0](a32), torch.full_like(a32, d)).double()
        scale = exact.abs().clamp_min(1e-30)
        assert float(((got - exact) / scale).abs().max()) < 5e-6
        check = _PHI[name][0](a + d) - _PHI[name][0](a)
        torch.testing.assert_close(exact, check, rtol=1e-6, atol=1e-15)


def test_solver_registry_covers_every_configurable_solver():
    from dfc_analog.config.options import SOLVERS as NAMES
    from dfc_analog.solvers import SOLVERS
    assert set(SOLVERS) == set(NAMES)


def test_named_seed_streams():
    """Training's streams keep their formulas (same seed, same run as before the streams had
    names); hashed streams are deterministic, differ per index, and fit a 63-bit seed."""
    from dfc_analog.config.seeds import generator, stream_seed
    assert stream_seed("epoch_order", 3, 2) == 3 * 100003 + 2
    assert stream_seed("sleep_noise", 3, 1, 5) == 3 * 1000003 + 1 * 10007 + 5
    assert stream_seed("network", 42) == 42
    a, b = stream_seed("realisation", 7, 0), stream_seed("realisation", 7, 1)
    assert a == stream_seed("realisation", 7, 0) and a != b and 0 <= a < 2 ** 63
    assert stream_seed("epoch_order", 10 ** 20, 1) < 2 ** 63
    x = torch.rand(3, generator=generator("realisation", 7, 0))
    assert torch.equal(x, torch.rand(3, generator=generator("realisation", 7, 0)))
    with pytest.raises(KeyError):
        stream_seed("no such stream", 1)


def test_small_tanh_is_tanh_to_float32_rounding():
    """small_tanh_: within ±SMALL_TANH in float32 the Taylor polynomial, within 1.5 ulp-sized
    relative errors (1.5e-7) of float64's tanh, as torch's own float32 tanh (6e-8); a tensor with
    any larger |d|, float64 and empty tensors take torch's tanh exactly."""
    from dfc_analog.model.network import SMALL_TANH, small_tanh_
    d = torch.linspace(-SMALL_TANH, SMALL_TANH, 20001, dtype=torch.float64)[:-1]
    d = d[d != 0]
    for scale in (1.0, 1e-3, 1e-6):
        exact = torch.tanh(d * scale)
        ours = small_tanh_((d * scale).float()).double()
        assert float(((ours - exact) / exact).abs().max()) < 1.5e-7
    wide = torch.linspace(-0.5, 0.5, 101)
    assert torch.equal(small_tanh_(wide.clone()), torch.tanh(wide))
    assert torch.equal(small_tanh_(d.clone()), torch.tanh(d))
    assert small_tanh_(torch.empty(0)).numel() == 0
