"""Single-phase DFC (learning/single_phase.py): forward and feedback plasticity in one phase."""
import dataclasses

import numpy as np

import pytest
import torch

from dfc_analog import Config, ConfigError, DFCNetwork
from dfc_analog.data import load_dataset
from dfc_analog.learning.forward import ForwardSettings, forward_update
from dfc_analog.learning.single_phase import SinglePhaseParams, single_phase_update
from dfc_analog.theory import condition2_ratio
from dfc_analog.training.loop import apply_feedback_update, schedule

PARAMS = SinglePhaseParams(t_end=2.0, dt=0.01, target_stepsize=0.1, sigma=0.01,
                           sigma_output=0.01, tau_hp=0.5)


def test_without_noise_the_forward_rule_is_the_authors_euler_dfc_update(make_net, batch):
    """σ = 0: the phase is the authors' Euler wake phase, its forward update eq. (5)."""
    net = make_net()
    x, y = batch()
    p = dataclasses.replace(PARAMS, sigma=0.0, sigma_output=0.0)
    upd, _ = single_phase_update(net, x, y, p, torch.Generator().manual_seed(0))
    cfg = Config(solver="authors-euler", step_size=p.dt, t_end=p.t_end, tau_v=p.tau_v,
                 alpha=p.alpha, k_p=p.k_p, target_stepsize=p.target_stepsize, method="dfc")
    ref = forward_update(net, x, y, ForwardSettings.from_config(cfg))
    for a, b in zip(upd.gW + upd.gb, ref.gW + ref.gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    assert upd.loss == pytest.approx(ref.loss)


def test_the_high_pass_removes_the_settled_control_from_the_feedback_rule(make_net, batch):
    """Without noise the feedback rule sees only the task's control u_task: on the whole u it
    is the decay -Q u_task u_taskᵀ ∝ ∫ u uᵀ dt, which grows with T; the high-pass leaves
    ∫ u u_hpᵀ dt, the rise of u over a few τ_hp, so its share falls as τ_hp / T."""
    net = make_net()
    x, y = batch()
    share = {}
    for T in (10.0, 20.0):
        p = dataclasses.replace(PARAMS, sigma=0.0, sigma_output=0.0, t_end=T, tau_hp=0.3)
        _, whole = single_phase_update(net, x, y, dataclasses.replace(p, tau_hp=1e12),
                                       torch.Generator())
        _, passed = single_phase_update(net, x, y, p, torch.Generator())
        norm = lambda gs: float(torch.cat([g.reshape(-1) for g in gs]).norm())  # noqa: E731
        share[T] = norm(passed) / norm(whole)
    assert share[10.0] < 0.15
    assert share[20.0] == pytest.approx(share[10.0] / 2, rel=0.1)


def test_the_delay_leaves_the_task_control_out_of_the_feedback_rule(make_net, batch):
    """Without noise the feedback rule sees the task's control alone, mostly while it rises;
    with eq. (13)'s integrators switched on after fb_delay the time average over the rest of
    the phase keeps under 5 % of it at 8 τ_hp and keeps falling with the delay (the
    controller's slow mode, here ~2 τ_u), so a small σ is not drowned by the task."""
    net = make_net()
    x, y = batch()
    p = dataclasses.replace(PARAMS, sigma=0.0, sigma_output=0.0, t_end=12.0, dt=0.05,
                            tau_hp=0.5)
    norm = lambda gs: float(torch.cat([g.reshape(-1) for g in gs]).norm())  # noqa: E731
    rate = {d: norm(single_phase_update(net, x, y, dataclasses.replace(p, fb_delay=d),
                                        torch.Generator())[1]) for d in (0.0, 4.0, 8.0)}
    assert rate[4.0] < 0.05 * rate[0.0]
    assert rate[8.0] < rate[4.0] / 2


def test_the_feedback_rule_meets_condition2_on_the_toy_task():
    """With r* = r_L^- (λ = 0) the control carries only the noise, as in the sleep phase; from
    Xavier-random Q (ratio ≈ 0.5), 100 SGD steps on the single phase's feedback update with
    sleep-like dynamics (α = 0.25, k_p = 0.1, τ_v = 0.05) raise the Condition-2 ratio above 0.9,
    as the sleep phase does (tests/test_feedback.py, Theorem 6)."""
    cfg = Config(train_feedback=True, train_samples=1280)
    net = DFCNetwork.from_config(cfg, torch.Generator().manual_seed(cfg.seed))
    data = load_dataset(cfg)
    before = float(condition2_ratio(net, data.val.x[:256]).mean())
    opt = torch.optim.SGD(list(net.Q), lr=cfg.fb_lr_init, weight_decay=cfg.fb_weight_decay)
    p = SinglePhaseParams(target_stepsize=0.0, tau_v=0.05, alpha=0.25, k_p=0.1, t_end=1.0,
                          dt=0.01, sigma=0.01, sigma_output=0.01)
    for k in range(100):
        rows = slice((k * 128) % 1280, (k * 128) % 1280 + 128)
        _, g_Q = single_phase_update(net, data.train.x[rows], data.train.y[rows], p,
                                     torch.Generator().manual_seed(k))
        apply_feedback_update(cfg, net, opt, g_Q)
    after = float(condition2_ratio(net, data.val.x[:256]).mean())
    assert before < 0.6
    assert after > 0.9, (before, after)


def test_the_schedule_has_no_sleep_passes_but_keeps_pre_training():
    cfg = Config(method="dfc", train_feedback=True, schedule="single-phase", epochs=2,
                 sleep_epochs_init=1, sleep_epochs=3)
    assert [p.kind for p in schedule(cfg)] == ["pretrain", "wake", "wake"]


@pytest.mark.parametrize("changes, words", [
    ({"method": "dfc-ssa", "train_feedback": True}, "method 'dfc'"),
    ({"method": "dfc-ss", "train_feedback": True, "sleep": "expected"}, "'dfc-ssa' with sleep"),
    ({"method": "dfc-ssa", "train_feedback": False, "sleep": "expected"}, "train_feedback"),
    ({"method": "dfc", "train_feedback": False}, "train_feedback"),
    ({"method": "dfc", "train_feedback": True, "tau_hp": -1.0}, "tau_hp"),
    ({"method": "dfc", "train_feedback": True, "fb_delay": -1.0}, "fb_delay"),
    ({"method": "dfc", "train_feedback": True, "fb_delay": 25.0, "t_end": 20.0}, "fb_delay"),
])
def test_bad_single_phase_settings_are_one_sentence(changes, words):
    with pytest.raises(ConfigError, match=words):
        Config(schedule="single-phase", **changes).validate()


def test_a_step_longer_than_half_tau_v_is_refused(make_net, batch):
    net = make_net()
    x, y = batch()
    with pytest.raises(ConfigError, match="step_size"):
        single_phase_update(net, x, y, dataclasses.replace(PARAMS, dt=0.15),
                            torch.Generator())


def test_single_phase_dfc_ssa_is_lemma1_and_the_expected_feedback_update_at_one_state(tmp_path):
    """DFC-SSA in the single-phase schedule with the expected sleep: one minibatch is the
    two-phase schedule's DFC-SSA forward update and expected feedback update, both at the
    minibatch's feed-forward state, one optimizer step each (J computed once for both)."""
    from dfc_analog import run_training
    from dfc_analog.config.seeds import generator
    from dfc_analog.learning.sleep import SleepParams
    from dfc_analog.learning.sleep_expected import expected_feedback_update
    from dfc_analog.training import loop

    cfg = Config(method="dfc-ssa", train_feedback=True, sleep="expected",
                 schedule="single-phase", sleep_epochs_init=0, epochs=1, train_samples=64,
                 val_samples=16, test_samples=16, batch_size=64, diagnostics=False,
                 fb_optimizer="sgd", fb_lr=0.5, optimizer="sgd", lr=0.05, normalize_lr=False)
    assert [p.kind for p in schedule(cfg)] == ["wake"]
    run_training(cfg, tmp_path / "run", progress=False)
    net = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    data = load_dataset(cfg)
    order = loop.epoch_order(cfg.seed, 0, 64)
    x, y = data.train.x[order], data.train.y[order]
    upd = forward_update(net, x, y, ForwardSettings.from_config(cfg))
    g_Q = expected_feedback_update(net, x, SleepParams.from_config(cfg))
    before = [q.clone() for q in net.Q]
    loop.apply_update(cfg, net, loop.make_optimizer(cfg, net), upd)
    loop.apply_feedback_update(cfg, net, loop.make_feedback_optimizer(cfg, net, cfg.fb_lr), g_Q)
    assert any(float((q - q0).norm()) > 1e-3 * float(q0.norm()) for q, q0 in zip(net.Q, before))
    with np.load(tmp_path / "run" / "weights.npz") as w:
        for i in range(net.num_layers):
            for name, t in (("W", net.W[i]), ("Q", net.Q[i])):
                np.testing.assert_allclose(w[f"{name}{i + 1}"], t.detach().numpy(), rtol=0,
                                           atol=1e-12)
