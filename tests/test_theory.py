"""The paper's claims the model relies on: Lemma 1, solver agreement, DFC-SS vs DFC-SSA, Prop. 4.

Tolerances follow from the solver tolerances: a steady state integrated with rtol 1e-9 is exact to
~1e-7, so any remaining difference is the O(λ) linearisation error Lemma 1 speaks of.
"""
import pytest
import torch

from dfc_analog import ControllerParams, SolverSettings, forward_update, simulate_wake
from dfc_analog.learning import ForwardSettings, lemma1_control, loss_gradient, output_target
from dfc_analog.learning.forward import ssa_state, steady_state_update

from tests.conftest import angle_deg, update_vector

TIGHT = SolverSettings("dopri5", rtol=1e-9, atol=1e-12)


def steady_state(net, x, y, lam, params, t_end=60.0):
    v_ff, r_ff = net.feedforward(x)
    r_star, delta = output_target(r_ff[-1], y, "mse", "sample", lam)
    wake = simulate_wake(net, x, r_star, params, TIGHT, t_end)
    return v_ff, r_star, delta, wake


@pytest.mark.parametrize("leak", ["integral", "total"])
@torch.no_grad()
def test_lemma1_steady_state_error_shrinks_with_lambda(make_net, batch, leak):
    """u_ss and v_ss of the simulated dynamics approach eq. (6); the error is O(λ)."""
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5, leak=leak)
    for seed in range(3):
        net = make_net(seed=seed)
        x, y = batch(seed=seed + 10)
        errors = []
        for lam in (1e-1, 1e-2, 1e-3):
            v_ff, _, delta, wake = steady_state(net, x, y, lam, params)
            u_th, dv_th = lemma1_control(net, v_ff, delta, params.alpha_eff)
            v_th, _, _ = ssa_state(net, x, dv_th)
            err_u = float((wake.u - u_th).norm() / u_th.norm())
            dv_sim = torch.cat(wake.v, 1) - torch.cat(v_ff, 1)
            dv_lemma = torch.cat(v_th, 1) - torch.cat(v_ff, 1)
            err_v = float((dv_sim - dv_lemma).norm() / dv_lemma.norm())
            errors.append(max(err_u, err_v))
        assert errors[0] > errors[1] > errors[2], errors
        assert errors[2] < 1e-3, errors
        # first order in λ: ten times smaller λ, about ten times smaller error
        assert 5 < errors[1] / errors[2] < 20, errors


def test_wrong_alpha_breaks_lemma1(make_net, batch):
    """The α̃ = α/(1+α k_p) of eq. (6) matters: the plain α misses the steady state of eq. (4)."""
    params = ControllerParams(tau_v=0.2, alpha=0.5, k_p=1.5, leak="integral")
    net = make_net()
    x, y = batch()
    v_ff, _, delta, wake = steady_state(net, x, y, 1e-4, params)
    right, _ = lemma1_control(net, v_ff, delta, params.alpha_eff)
    wrong, _ = lemma1_control(net, v_ff, delta, params.alpha)
    assert float((wake.u - right).norm() / right.norm()) < 1e-3
    assert float((wake.u - wrong).norm() / wrong.norm()) > 1e-2


@pytest.mark.parametrize("leak", ["integral", "total"])
@torch.no_grad()
def test_controller_reaches_target_up_to_alpha_term(make_net, batch, leak):
    """At the steady state e = α̃ u, i.e. r_L = r* - α̃ u (Lemma 1)."""
    params = ControllerParams(tau_v=0.2, alpha=0.05, k_p=1.5, leak=leak)
    net = make_net(seed=3)
    x, y = batch(seed=4)
    _, r_star, delta, wake = steady_state(net, x, y, 0.05, params)
    r_L = net.phi(net.num_layers - 1, wake.v[-1])
    residual = r_L - (r_star - params.alpha_eff * wake.u)
    assert float(residual.norm() / delta.norm()) < 1e-6
    # and the controller did move the output: the remaining error is the α̃ u term only
    assert float((r_star - r_L).norm() / delta.norm()) < 0.1


def test_adaptive_and_fine_fixed_step_updates_agree(make_net, batch):
    """dopri5 (rtol 1e-6) and rk4 with Δt = 0.001 give the same DFC update (angle < 0.5°)."""
    net = make_net(seed=5)
    x, y = batch(seed=6)
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
    common = dict(t_end=5.0, loss="mse", reduction="mean", target_stepsize=0.05)
    adaptive = forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings("dopri5", 1e-6, 1e-8),
                              **common))
    fixed = forward_update(net, x, y, ForwardSettings("dfc", params, SolverSettings("rk4", step_size=1e-3),
                           **common))
    angle = angle_deg(update_vector(adaptive), update_vector(fixed))
    assert angle < 0.5
    # what remains is the trapezoidal rule over dopri5's accepted steps (second order)
    assert angle < 0.1


@torch.no_grad()
def test_plasticity_quadrature_matches_dense_trajectory(make_net, batch):
    """The step quadrature of eq. (5) equals Simpson's rule on a dense stored trajectory."""
    net = make_net(seed=9)
    x, y = batch(seed=10)
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
    _, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1], y, "mse", "mean", 0.05)
    T = 5.0
    times = torch.linspace(0, T, 2001, dtype=torch.float64)
    wake = simulate_wake(net, x, r_star, params, SolverSettings("dopri5", 1e-8, 1e-10), T,
                         times=times, accumulate=True)
    tr = wake.trajectory
    weights = torch.ones(2001, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    weights *= (T / 2000) / 3.0                                          # Simpson's rule
    pre = [x.expand(2001, -1, -1)] + tr.rate[:-1]
    for i in range(net.num_layers):
        delta = net.phi(i, tr.soma[i]) - net.phi(i, tr.basal[i])         # (T, B, n_i)
        dense_d = torch.einsum("t,tbn->bn", weights, delta)
        assert float((wake.d[i] - dense_d).abs().max()) < 1e-4 * float(dense_d.abs().max())
        if i > 0:
            dense_M = torch.einsum("t,tbn,tbm->nm", weights, delta, pre[i])
            error = float((wake.M[i - 1] - dense_M).abs().max())
            assert error < 1e-4 * float(dense_M.abs().max())


def test_authors_euler_converges_to_the_ode(make_net, batch):
    """The authors' Euler scheme approaches the continuous-time update as Δt shrinks."""
    net = make_net(seed=7)
    x, y = batch(seed=8)
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
    common = dict(t_end=5.0, loss="mse", reduction="mean", target_stepsize=0.05)
    ref = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params,
                                       SolverSettings("dopri5", 1e-8, 1e-10), **common)))
    angles = [angle_deg(update_vector(forward_update(
        net, x, y, ForwardSettings("dfc", params, SolverSettings("authors-euler", step_size=dt), **common))), ref)
        for dt in (0.02, 0.005)]
    assert angles[1] < angles[0]
    assert angles[1] < 0.2


def test_steady_state_and_closed_form_updates_agree(make_net, batch):
    """DFC-SS (simulated to steady state) and DFC-SSA agree for small λ and α (angle < 1°)."""
    params = ControllerParams(tau_v=0.2, alpha=1e-3, k_p=1.5)
    for seed in range(3):
        net = make_net(seed=seed)
        x, y = batch(seed=20 + seed)
        common = dict(loss="mse", reduction="sample", target_stepsize=1e-3)
        ss = forward_update(net, x, y, ForwardSettings("dfc-ss", params, SolverSettings("dopri5", 1e-8, 1e-10),
                            t_end=40.0, **common))
        ssa = forward_update(net, x, y, ForwardSettings("dfc-ssa", params, SolverSettings(), t_end=40.0,
                             **common))
        assert angle_deg(update_vector(ss), update_vector(ssa)) < 1.0


def test_dfc_update_approaches_steady_state_update_for_long_phases(make_net, batch):
    """Eq. (5) accumulated over a long phase is dominated by the steady state (paper §3.2)."""
    params = ControllerParams(tau_v=0.2, alpha=1e-3, k_p=1.5)
    net = make_net(seed=11)
    x, y = batch(seed=12)
    common = dict(loss="mse", reduction="sample", target_stepsize=1e-3)
    solver = SolverSettings("dopri5", 1e-7, 1e-10)
    ss = update_vector(forward_update(net, x, y, ForwardSettings("dfc-ss", params, solver, t_end=40.0, **common)))
    short = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params, solver, t_end=5.0, **common)))
    long = update_vector(forward_update(net, x, y, ForwardSettings("dfc", params, solver, t_end=80.0, **common)))
    assert angle_deg(long, ss) < angle_deg(short, ss)
    assert angle_deg(long, ss) < 1.0


def test_proposition4_descent_direction(make_net):
    """Prop. 4: eq. (9) at the Lemma-1 steady state with η_i = η/‖r_{i-1}‖² lies within 90° of
    the negative loss gradient, on many random networks (per sample, any Q)."""
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        depth = int(torch.randint(1, 4, (1,), generator=gen))
        sizes = [int(n) for n in torch.randint(2, 12, (depth + 2,), generator=gen)]
        init = "xavier" if seed % 2 else "weight_product"
        net = make_net(sizes=sizes, seed=seed, feedback_init=init)
        B = 16
        x = torch.rand(B, sizes[0], generator=gen, dtype=torch.float64) * 2 - 1
        y = torch.randn(B, sizes[-1], generator=gen, dtype=torch.float64)
        v_ff, r_ff = net.feedforward(x)
        _, delta = output_target(r_ff[-1], y, "mse", "sample", 1e-4)
        _, dv = lemma1_control(net, v_ff, delta, alpha_eff=1e-6)
        # per-sample loss gradients dL/dW_i = (J_iᵀ g) r_{i-1}ᵀ and eq. (9) updates, batched
        g = loss_gradient(r_ff[-1], y, "mse", "sample")                   # (B, n_L)
        grad_v = net.split_layers((g.unsqueeze(1) @ net.jacobian(v_ff)).squeeze(1))
        dvs = net.split_layers(dv)
        r_prev = [x] + r_ff[:-1]
        inner = torch.zeros(B, dtype=torch.float64)
        for i in range(net.num_layers):
            eta_i = 1.0 / (r_prev[i] ** 2).sum(1)                          # η/‖r_{i-1}‖²
            # <ΔW_i, -∇W_i L> = η_i (Δv_i · -grad_v_i) ‖r_{i-1}‖² summed over layers
            inner += eta_i * (dvs[i] * -grad_v[i]).sum(1) * (r_prev[i] ** 2).sum(1)
        assert (inner > 0).all(), f"ascent direction on network {sizes} (seed {seed})"


def test_steady_state_rule_matches_explicit_formula(make_net, batch):
    """The DFC-SS rule is eq. (5) with the authors' scale -(2/B) Σ_b (φ(v) - φ(v_B)) r_{i-1}ᵀ."""
    net = make_net()
    x, _ = batch(B=4)
    vs = [v + 0.1 for v in net.feedforward(x)[0]]
    gW, gb = steady_state_update(net, x, vs, "rate")
    r_prev = x
    for i in range(net.num_layers):
        vb = r_prev @ net.W[i].detach().T + net.b[i].detach()
        expected = sum(-(2 / 4) * torch.outer(net.phi(i, vs[i][s]) - net.phi(i, vb[s]),
                                              r_prev[s]) for s in range(4))
        torch.testing.assert_close(gW[i], expected)
        r_prev = net.phi(i, vs[i])


def test_ssa_sweep_forms_the_rule_signal_without_cancellation(make_net, batch):
    """The DFC-SSA sweep's eq. (5) / (9) signal, formed as the departure φ(v_B + Δv) - φ(v_B),
    equals the rule recomputed from the absolute state (float64), and keeps its digits in
    float32 for a departure of 1e-5, where the plain difference φ(v) - φ(v_B) does not."""
    from dfc_analog.learning.forward import signals_update
    from tests.conftest import angle_deg
    net = make_net()
    x, _ = batch(B=8)
    v_ff, r_ff = net.feedforward(x)
    for scale in (0.05, 1e-5):
        dv = scale * torch.randn(8, sum(net.layer_sizes[1:]), dtype=x.dtype,
                                 generator=torch.Generator().manual_seed(3))
        for plasticity in ("rate", "voltage"):
            vs, rs, deltas = ssa_state(net, x, dv, v_ff, r_ff, plasticity)
            ours = sum(signals_update(deltas, [x] + rs[:-1]), [])
            recomputed = sum(steady_state_update(net, x, vs, plasticity), [])
            for a, b in zip(ours, recomputed):
                torch.testing.assert_close(a, b, rtol=1e-12 / scale, atol=1e-14)
            if scale < 1e-3 and plasticity == "rate":
                net32, x32, dv32 = make_net(dtype=torch.float32), x.float(), dv.float()
                v32, r32 = net32.feedforward(x32)
                vs32, rs32, d32 = ssa_state(net32, x32, dv32, v32, r32, plasticity)
                assert angle_deg(sum(signals_update(d32, [x32] + rs32[:-1]), []), ours) < 1e-2
                assert angle_deg(sum(steady_state_update(net32, x32, vs32, plasticity), []),
                                 ours) > 0.1
