"""The sleep phase's expected update in closed form (learning/sleep_expected.py,
docs/expected-sleep.md): its Lyapunov solve, its agreement with the Monte-Carlo mean of the
simulated sleep phase, Theorem 6's fixed point, and Condition 2 on the toy task."""
import numpy as np
import pytest
import torch

from dfc_analog import Config, DFCNetwork, DivergenceError, run_training
from dfc_analog.data import load_dataset
from dfc_analog.learning.sleep import SleepParams, feedback_update
from dfc_analog.learning.sleep_expected import (FeedbackJacobians, cayley_lyapunov,
                                                commuting_block_inverse,
                                                expected_feedback_update, lyapunov,
                                                sleep_jacobian)
from dfc_analog.theory import condition2_ratio
from dfc_analog.training.loop import apply_feedback_update

pytestmark = pytest.mark.usefixtures("one_thread")



def kronecker_lyapunov(A, F):
    """Reference: (A ⊗ I + I ⊗ A) vec P = vec F, row-major vec, one dense solve per sample."""
    B, n, _ = A.shape
    eye = torch.eye(n, dtype=A.dtype)
    kron = torch.stack([torch.kron(a, eye) + torch.kron(eye, a) for a in A])
    return torch.linalg.solve(kron, F.reshape(B, n * n, 1)).reshape(B, n, n)


@pytest.mark.parametrize("n", [1, 3, 20])
def test_lyapunov_matches_the_kronecker_solve(n):
    gen = torch.Generator().manual_seed(n)
    # eigenvalues 0.3..1.3 (a stable controller), far from normal: A = V T V⁻¹, T triangular
    T = torch.triu(torch.randn(16, n, n, generator=gen, dtype=torch.float64), 1) * 2 / n ** 0.5
    T = T + torch.diag_embed(0.3 + torch.rand(16, n, generator=gen, dtype=torch.float64))
    V = torch.eye(n, dtype=torch.float64) + 0.3 * torch.randn(16, n, n, generator=gen,
                                                               dtype=torch.float64) / n ** 0.5
    A = V @ T @ torch.linalg.inv(V)
    F = torch.randn(16, n, n, generator=gen, dtype=torch.float64)
    F = F + F.transpose(1, 2)
    P = lyapunov(A, F)
    reference = kronecker_lyapunov(A, F)
    assert float((P - reference).norm() / reference.norm()) < 1e-10
    P32 = lyapunov(A.float(), F.float()).double()
    assert float((P32 - reference).norm() / reference.norm()) < 1e-4
    # any shift h > 0 with its resolvent (hI + A)⁻¹ gives the same P
    h = torch.full((16, 1, 1), 0.7, dtype=torch.float64)
    P_h = cayley_lyapunov(h, torch.linalg.inv(h * torch.eye(n, dtype=torch.float64) + A), F)
    assert float((P_h - reference).norm() / reference.norm()) < 1e-10


def test_commuting_block_inverse():
    """[[a0 I + a1 M, b I], [c1 M, d I]]⁻¹ from one n × n inverse equals the dense 2n × 2n one,
    with per-sample a0, d as the sleep controller's shifted A uses them."""
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(6, 4, 4, generator=gen, dtype=torch.float64)
    a0 = 3.0 + torch.rand(6, 1, 1, generator=gen, dtype=torch.float64)
    d = 2.0 + torch.rand(6, 1, 1, generator=gen, dtype=torch.float64)
    a1, b, c1 = 0.4, -3.1, 0.9
    eye = torch.eye(4, dtype=torch.float64)
    Z = torch.cat([torch.cat([a0 * eye + a1 * M, b * eye.expand(6, 4, 4)], 2),
                   torch.cat([c1 * M, d * eye], 2)], 1)
    torch.testing.assert_close(commuting_block_inverse(M, a0, a1, b, c1, d), torch.linalg.inv(Z),
                               rtol=1e-11, atol=1e-12)


def test_lyapunov_reports_an_unstable_controller():
    A = torch.eye(3, dtype=torch.float64).expand(2, 3, 3).clone()
    A[1, 2, 2] = -0.1
    with pytest.raises(DivergenceError, match="raise alpha_fb"):
        lyapunov(A, torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    # an eigenvalue -h of A makes hI + A singular: its block inverse is not finite, and the
    # solve stops at once with the same report
    a0, a1, b, c1, d = 2.0, 0.5, -1.0, 0.8, 1.5
    M = torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * (-a0 * d / (a1 * d - b * c1))
    R = commuting_block_inverse(M, a0, a1, b, c1, d)
    assert not bool(torch.isfinite(R).all())
    with pytest.raises(DivergenceError, match="raise alpha_fb"):
        cayley_lyapunov(1.0, R, torch.eye(6, dtype=torch.float64).expand(2, 6, 6))


def linear_net(seed=3, sizes=(5, 4, 3, 2)):
    gen = torch.Generator().manual_seed(seed)
    net = DFCNetwork(list(sizes), ["linear"] * (len(sizes) - 1), dtype=torch.float64,
                     generator=gen, feedback_init="xavier")
    x = torch.rand(64, sizes[0], dtype=torch.float64, generator=gen) * 2 - 1
    return net, x


def monte_carlo(net, x, p, seeds):
    """Mean and standard error (per entry) over ``seeds`` independent simulated sleep phases."""
    runs = torch.stack([torch.cat(feedback_update(net, x, p, torch.Generator().manual_seed(s)))
                        for s in range(seeds)])
    return runs.mean(0), runs.std(0) / seeds ** 0.5


def assert_monte_carlo_agrees(p, seeds, bias):
    """‖MC mean - expected‖ ≤ 4 standard errors (of the norm, from the seeds' spread) plus the
    model's own bias relative to the simulation: the soma's lag τ_v/τ_A (the closed form takes
    τ_v → 0) and the start from rest (the closed form is stationary)."""
    net, x = linear_net()
    expected = torch.cat(expected_feedback_update(net, x, p))
    mean, se = monte_carlo(net, x, p, seeds)
    scale = float(expected.norm())
    err, noise = float((mean - expected).norm()) / scale, float(se.norm()) / scale
    assert err <= 4 * noise + bias, (err, noise)
    assert noise < 0.07                                       # the check has teeth


@pytest.mark.parametrize("leak,k_p", [("integral", 0.0), ("total", 0.3)])
def test_expected_update_is_the_monte_carlo_mean(leak, k_p):
    """Linear network (J exact for any σ), 8 seeds of 64 samples over T = 2 τ_u (some 40
    relaxation times of the controller, α = 4): the mean of the simulated update is within
    4 standard errors (measured: 1.3% at k_p = 0.3, 5% at k_p = 0) plus the bias 10% (τ_v/τ_A =
    4% lag, about 5% from the start at rest) of the closed form. A closed form that lets the
    apical filter pass Q u unchanged (τ_A ≪ τ_u) misses by 34-38% at k_p = 0.3."""
    p = SleepParams(tau_v=0.002, tau_a=0.05, alpha=4.0, k_p=k_p, sigma=0.01, sigma_output=0.01,
                    dt=0.0005, t_end=2.0, leak=leak)
    assert_monte_carlo_agrees(p, seeds=8, bias=0.10)


@pytest.mark.slow
def test_expected_update_is_the_monte_carlo_mean_tightly():
    """As above with τ_v/τ_A = 0.01, T = 4 τ_u and 16 seeds: bias bound 4%."""
    p = SleepParams(tau_v=0.0005, tau_a=0.05, alpha=4.0, k_p=0.3, sigma=0.01,
                    sigma_output=0.01, dt=0.0001, t_end=4.0, leak="total")
    assert_monte_carlo_agrees(p, seeds=16, bias=0.04)


@pytest.mark.slow
def test_expected_update_matches_the_simulation_at_small_sigma_on_tanh():
    """On a tanh network the closed form linearises; at σ = 0.01 the simulated mean still agrees."""
    gen = torch.Generator().manual_seed(4)
    net = DFCNetwork([5, 4, 3, 2], ["tanh", "tanh", "linear"], dtype=torch.float64,
                     generator=gen, feedback_init="xavier")
    x = torch.rand(64, 5, dtype=torch.float64, generator=gen) * 2 - 1
    p = SleepParams(tau_v=0.002, tau_a=0.05, alpha=4.0, k_p=0.3, sigma=0.01, sigma_output=0.01,
                    dt=0.0005, t_end=2.0, leak="total")
    expected = torch.cat(expected_feedback_update(net, x, p))
    mean, se = monte_carlo(net, x, p, 8)
    err = float((mean - expected).norm() / expected.norm())
    assert err <= 4 * float(se.norm() / expected.norm()) + 0.10, err


def test_fixed_point_is_theorem6():
    """Theorem 6: k_p = 0 on a linear network, gradient steps on the expected update with decay β
    converge to J^T (J J^T + γ I)^-1 up to scale, for some γ > 0 (no noise: the closed form is
    deterministic, so the fixed point is reached to rounding)."""
    gen = torch.Generator().manual_seed(3)
    net = DFCNetwork([6, 5, 4, 3], ["linear"] * 3, dtype=torch.float64, generator=gen,
                     feedback_init="xavier")
    W = [w.detach() for w in net.W]
    J = torch.cat([W[2] @ W[1], W[2], torch.eye(3, dtype=torch.float64)], dim=1)
    x = torch.rand(8, 6, dtype=torch.float64, generator=gen) * 2 - 1
    p = SleepParams(tau_a=0.3, alpha=10.0, k_p=0.0, sigma=0.01, sigma_output=0.01)
    beta = 0.025
    for _ in range(300):
        for q, g in zip(net.Q, expected_feedback_update(net, x, p)):
            q -= 3.0 * (g + beta * q)
    residual = sum(float((g + beta * q).norm()) for q, g in
                   zip(net.Q, expected_feedback_update(net, x, p)))
    assert residual < 1e-10
    Q = net.feedback_matrix()
    fits = []
    for gamma in np.logspace(-4, 2, 121):
        target = J.T @ torch.linalg.inv(J @ J.T + gamma * torch.eye(3, dtype=torch.float64))
        fits.append((float((target * Q).sum() / (target.norm() * Q.norm())), gamma))
    cosine, gamma = max(fits)
    assert cosine > 0.9999, cosine
    assert 1e-3 < gamma < 100


def test_expected_sleep_meets_condition2_on_the_toy_task():
    """From Xavier-random Q (ratio ≈ 0.5), steps on the expected update with the paper's Fig. 3
    sleep settings raise the Condition-2 ratio above 0.9, as the simulated sleep phase does
    (tests/test_feedback.py)."""
    cfg = Config(train_feedback=True, train_samples=1280, sleep="expected")
    net = DFCNetwork.from_config(cfg, torch.Generator().manual_seed(cfg.seed))
    data = load_dataset(cfg)
    before = float(condition2_ratio(net, data.val.x[:256]).mean())
    opt = torch.optim.SGD(list(net.Q), lr=cfg.fb_lr_init, weight_decay=cfg.fb_weight_decay)
    p = SleepParams.from_config(cfg)
    for k in range(300):
        xb = data.train.x[(k * 128) % 1280:][:128]
        apply_feedback_update(cfg, net, opt, expected_feedback_update(net, xb, p))
    after = float(condition2_ratio(net, data.val.x[:256]).mean())
    assert before < 0.6
    assert after > 0.9, (before, after)


def test_float32_gives_the_float64_update(make_net, batch):
    net64 = make_net(feedback_init="xavier", sizes=(15, 40, 40, 5))
    net32 = make_net(feedback_init="xavier", sizes=(15, 40, 40, 5), dtype=torch.float32)
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    x, _ = batch(B=64)
    p = SleepParams(alpha=0.6, k_p=0.15, sigma=0.0015, sigma_output=0.0015, leak="total")
    for a, b in zip(expected_feedback_update(net32, x.float(), p),
                    expected_feedback_update(net64, x, p)):
        assert float((a.double() - b).norm() / b.norm()) < 1e-4


@pytest.mark.parametrize("output", ["linear", "tanh"])
def test_noise_covariance_through_the_jacobian(output):
    """sleep_jacobian's J Σ² Jᵀ = σ² J_h J_hᵀ + σ_L² J_L J_Lᵀ against autograd's J of r_L with
    respect to the voltages (the apical inputs), for a linear output (J_L = I) and a tanh one."""
    gen = torch.Generator().manual_seed(8)
    net = DFCNetwork([6, 5, 4, 3], ["tanh", "tanh", output], dtype=torch.float64, generator=gen,
                     feedback_init="xavier")
    x = torch.rand(7, 6, generator=gen, dtype=torch.float64) * 2 - 1
    p = SleepParams(sigma=0.02, sigma_output=0.005)

    def output_rate(dv):                  # r_L with Δv_i added to each layer's voltage
        r = x
        for i, d in enumerate(net.split_layers(dv)):
            r = net.phi(i, net.basal(i, r) + d)
        return r

    with torch.no_grad():
        J, JSJ = sleep_jacobian(net, x, p)
    sigma2 = torch.diag(torch.tensor([p.sigma ** 2] * 9 + [p.sigma_output ** 2] * 3,
                                     dtype=torch.float64))
    for b in range(x.shape[0]):           # the samples are independent: one Δv for all
        Jb = torch.autograd.functional.jacobian(
            lambda dv: output_rate(dv.expand(x.shape[0], -1))[b],
            torch.zeros(12, dtype=torch.float64))
        torch.testing.assert_close(J[b], Jb, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(JSJ[b], Jb @ sigma2 @ Jb.T, rtol=1e-12, atol=1e-18)

@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_kept_jacobians_give_the_recomputed_update(dtype, tol):
    """FeedbackJacobians (J per training sample, kept across the sleep passes of an epoch) gives
    expected_feedback_update's update of the same samples, also after Q has changed; the
    tolerance is rounding (the two paths multiply in another order)."""
    gen = torch.Generator().manual_seed(5)
    net = DFCNetwork([12, 9, 7, 4], ["tanh", "tanh", "linear"], dtype=dtype, generator=gen,
                     feedback_init="xavier")
    x = (torch.rand(50, 12, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)
    p = SleepParams(alpha=0.6, k_p=0.15, sigma=0.0015, sigma_output=0.0015, leak="total")
    kept = FeedbackJacobians(net, x, p, chunk=16)                   # chunks: 16 + 16 + 16 + 2
    assert kept.J.element_size() * kept.J.numel() + kept.JSJ.element_size() * kept.JSJ.numel() \
        == FeedbackJacobians.nbytes(net, 50)
    idx = torch.tensor([3, 49, 17, 0, 17, 32])
    for _ in range(2):
        for a, b in zip(kept.update(net, idx, p), expected_feedback_update(net, x[idx], p)):
            assert float((a - b).norm() / b.norm()) < tol
        for q, g in zip(net.Q, kept.update(net, idx, p)):           # a feedback step
            q -= 0.05 * g / g.norm()


def test_training_keeps_the_jacobians_with_the_same_result(tmp_path):
    """Training with the Jacobians kept across the sleep passes (the default) and recomputed
    every minibatch (jacobian_cache_mib = 0) gives the same run: weights to rounding."""
    cfg = Config(train_feedback=True, sleep="expected", sleep_epochs_init=2, sleep_epochs=2,
                 epochs=2, train_samples=192, val_samples=32, test_samples=32, batch_size=64,
                 diagnostics=False, dtype="float64", fb_optimizer="sgd")
    nets = []
    for cache in (4096, 0):
        run_training(cfg.replace(jacobian_cache_mib=cache), tmp_path / f"run{cache}",
                     progress=False)
        nets.append(np.load(tmp_path / f"run{cache}" / "weights.npz"))
    assert sorted(nets[0].files) == sorted(nets[1].files)
    for k in nets[0].files:
        np.testing.assert_allclose(nets[0][k], nets[1][k], rtol=1e-9, atol=1e-12)


def test_training_with_the_expected_sleep_phase(tmp_path):
    cfg = Config(train_feedback=True, sleep="expected", sleep_epochs_init=1, sleep_epochs=1,
                 epochs=1, train_samples=256, val_samples=64, test_samples=64, diagnostics=False)
    rows = run_training(cfg, tmp_path / "run", progress=False)
    assert len(rows) == 2 and np.isfinite(rows[-1]["test_loss"])


def test_every_trained_feedback_preset_has_an_expected_sleep_twin():
    from dfc_analog.config.presets import preset_config, preset_names
    names = preset_names()
    trained = [n for n in names if not n.endswith("-exp") and "-dfc" in n
               and preset_config(n).train_feedback and n.split("-dfc")[1] in ("", "-ss", "-ssa")]
    assert len(trained) == 12
    for name in trained:
        exp = preset_config(f"{name}-exp")
        assert exp.sleep == "expected"
        assert exp.replace(sleep="simulated") == preset_config(name)
