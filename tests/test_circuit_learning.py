"""Learning on the circuit: the circuit's own target (eq. 3: track-and-hold of r_L^-, label
source), its own eq. (5) integrators, and the SPICE wake phase of the training loop, against the
software (learning.output_target, the ODE solve of the same phase, closed forms).

Tolerances: the held r_L^- and r* come from ngspice's DC operating point (Newton iterated to
machine precision on these nets), so 1e-6 relative is loose; the integrated ΔW follows the
circuit's trajectory, which matches the ODE's to ~reltol of a signal's range (test_spice.py),
hence angle ≤ 1° and relative error ≤ 1 % at the default reltol 1e-3 (measured: 0.014°, 0.08 %).
"""
import re

import numpy as np
import pytest
import torch

from dfc_analog.circuit.graph import (LEAK_RATIO, CircuitPlasticity, CircuitTarget, Scaling,
                                      build_graph)
from dfc_analog.circuit.learning import SpiceWake, learning_phase
from dfc_analog.circuit.netlist import SpiceOptions, write_netlist
from dfc_analog.circuit.simulate import run_netlist
from dfc_analog.errors import ConfigError
from dfc_analog.learning import ForwardSettings, forward_update, output_target, update_angle
from dfc_analog.learning.targets import target_gain
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import SolverSettings

from tests.test_spice import HAVE_NGSPICE, toy

pytestmark = pytest.mark.skipif(not HAVE_NGSPICE, reason="libngspice is not installed")
TIMES = np.linspace(0.0, 5.0, 11)


@pytest.mark.parametrize("reduction", ["mean", "sample"])
def test_target_gain_is_eq3(reduction):
    """r* = r - g ∇ with the per-sample gradient form is output_target's eq. (3)."""
    r, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    g = target_gain("mse", reduction, 0.05, 4, 3)
    np.testing.assert_allclose(output_target(r, y, "mse", reduction, 0.05)[0],
                               r - g * 2 * (r - y), rtol=1e-15)
    c = torch.tensor([0, 2, 1, 1])
    g = target_gain("cross_entropy", reduction, 0.05, 4, 3)
    onehot = torch.eye(3, dtype=torch.float64)[c]
    np.testing.assert_allclose(output_target(r, c, "cross_entropy", reduction, 0.05)[0],
                               r - g * (torch.softmax(r, 1) - onehot), rtol=1e-15)


def test_held_output_and_target_mse():
    """The track-and-hold keeps the feed-forward output r_L^- (eq. 2) through the phase, and the
    circuit's r* is eq. (3) of it and the label."""
    net, x, y = toy()
    settings = ForwardSettings(target_stepsize=0.05)
    phase = learning_phase(net, x[0], y[0], settings, TIMES)
    with torch.no_grad():
        r_ff = net.feedforward(x)[1][-1]
    want = r_ff[0].numpy()
    assert np.abs(phase.held - want).max() <= 1e-6 * np.abs(want).max()
    r_star = output_target(r_ff, y, "mse", "mean", 0.05)[0][0].numpy()
    assert np.abs(phase.target - r_star).max() <= 1e-6 * np.abs(r_star).max()
    # the controller drives the output to the circuit's own target (Lemma 1: up to α̃)
    r_end = phase.trajectory.rate[-1][-1, 0].numpy()
    assert np.abs(r_end - r_star).max() <= 0.05 * np.abs(r_star - want).max()


def test_target_cross_entropy():
    """The softmax form of eq. (3) as one B-source over the n_L held values."""
    gen = torch.Generator().manual_seed(3)
    net = DFCNetwork([6, 5, 4], ["tanh", "linear"], dtype=torch.float64, generator=gen)
    x = torch.rand(1, 6, generator=gen, dtype=torch.float64) * 2 - 1
    label = torch.tensor([2])
    settings = ForwardSettings(loss="cross_entropy", target_stepsize=0.5, reduction="sample")
    phase = learning_phase(net, x[0], label, settings, TIMES)
    with torch.no_grad():
        r_ff = net.feedforward(x)[1][-1]
    r_star = output_target(r_ff, label, "cross_entropy", "sample", 0.5)[0][0].numpy()
    assert np.abs(phase.target - r_star).max() <= 1e-6 * np.abs(r_star).max()


def test_synapse_integrator_closed_form():
    """One synapse integrator with constant Δ and r (sources on its nodes), the controller
    switched on at t_on: V(T) = G v_s Δ r R_leak (1 - exp(-T / τ_leak)), τ_leak = LEAK_RATIO T,
    i.e. v_s Δ r to 5e-7; V = 0 before the switch-on."""
    net = DFCNetwork([1, 1], ["linear"], dtype=torch.float64)
    scaling = Scaling(time_scale=1e-6, v_scale=0.5, resistance=1e4)
    T, delta, r = 2.0, 0.3, -0.7
    g = build_graph(net, ControllerParams(), scaling, [r], None, constant_input=False,
                    plasticity=CircuitPlasticity("rate", T))
    text = write_netlist(g, "wake", T, np.array([0.0, T]), 1.0, SpiceOptions(reltol=1e-6))
    keep = [line for line in text.splitlines() if re.match(r"[BCRG]l1_d[wb]_0", line)]
    assert len(keep) == 6          # multiplier, capacitor, leak; bias: VCCS, capacitor, leak
    vs, ts = scaling.v_scale, scaling.time_scale
    deck = "\n".join(["* integrator", *keep, f"Vdelta l1_delta_0 0 PWL(0 0 {1e-6 * ts!r} "
                      f"{delta * vs!r})", f"Vin in_0 0 DC {r * vs!r}",
                      ".options reltol=1e-6", f".tran {T * ts / 20!r} {T * ts!r}", ".end", ""])
    data = run_netlist(deck, ["l1_dw_0_0", "l1_db_0"])
    t = data["time"] / ts
    tau = LEAK_RATIO * T
    for name, drive in (("l1_dw_0_0", delta * r), ("l1_db_0", delta)):
        exact = vs * drive * tau / T * (1 - np.exp(-t / tau))
        np.testing.assert_allclose(data[name], exact, atol=1e-6 * abs(vs * drive))
        assert abs(data[name][-1] - vs * drive) <= 1e-6 * abs(vs * drive)


@pytest.mark.parametrize("rule", ["rate", "voltage"])
def test_circuit_update_matches_ode(rule):
    """On the toy net the circuit-integrated ΔW is the eq. (5) update of the ODE solve of the
    same phase (forward_update: simulate_wake accumulating eq. 5 along its steps)."""
    net, x, y = toy()
    settings = ForwardSettings(params=ControllerParams(plasticity=rule),
                               solver=SolverSettings("dopri5", 1e-8, 1e-8))
    phase = learning_phase(net, x[0], y[0], settings, TIMES)
    ode = forward_update(net, x, y, settings)
    angle, rel = update_angle(ode.gW + ode.gb, phase.update)
    assert angle <= 1.0 and rel <= 0.01, (angle, rel)


def test_spice_wake_minibatch_and_alter():
    """The persistent-process wake phase on a minibatch, split over two processes, equals the
    ODE path; after a weight change the altered circuit follows the new weights."""
    net, _, _ = toy()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(4, 15, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    settings = ForwardSettings()
    with SpiceWake(settings, workers=2) as wake:
        for step in range(2):
            got = wake(net, x, y)
            ref = forward_update(net, x, y, settings)
            angle, rel = update_angle(ref.gW + ref.gb, got.gW + got.gb)
            assert angle <= 1.0 and rel <= 0.01, (step, angle, rel)
            assert got.loss == pytest.approx(ref.loss)
            with torch.no_grad():
                net.W[1].mul_(-0.5)
                net.b[0].add_(0.2)
        assert len(wake.processes) == 2
        part = wake(net, x[:1], y[:1])     # a smaller minibatch: the step g is altered too
        ref = forward_update(net, x[:1], y[:1], settings)
        assert update_angle(ref.gW + ref.gb, part.gW + part.gb)[0] <= 1.0


def test_spice_wake_cross_entropy():
    """Class labels become one-hot label sources; the softmax target's update equals the ODE's."""
    gen = torch.Generator().manual_seed(3)
    net = DFCNetwork([6, 5, 4], ["tanh", "linear"], dtype=torch.float64, generator=gen)
    x = torch.rand(3, 6, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.tensor([2, 0, 3])
    settings = ForwardSettings(loss="cross_entropy", target_stepsize=0.5)
    with SpiceWake(settings, workers=1) as wake:
        got = wake(net, x, y)
    ref = forward_update(net, x, y, settings)
    angle, rel = update_angle(ref.gW + ref.gb, got.gW + got.gb)
    assert angle <= 1.0 and rel <= 0.01, (angle, rel)


def test_spice_wake_refuses_other_rules():
    with pytest.raises(ConfigError, match="method 'dfc'"):
        SpiceWake(ForwardSettings(method="dfc-ssa"))
    with pytest.raises(ConfigError, match="either the target"):
        build_graph(toy()[0], ControllerParams(), r_star=[0.0] * 5,
                    target=CircuitTarget("mse", 0.1))
    with pytest.raises(ConfigError, match="class index"):
        build_graph(toy()[0], ControllerParams(), label=[0.5],
                    target=CircuitTarget("cross_entropy", 0.1))


def test_training_with_spice_in_the_loop(tmp_path, capsys):
    """``train --simulator spice`` writes an ordinary run folder (one epoch, one minibatch)."""
    from dfc_analog import runio
    from dfc_analog.train import main as train_main
    assert train_main(["--simulator", "spice", "--train-samples", "4", "--val-samples", "4",
                       "--test-samples", "4", "--batch-size", "4", "--threads", "1",
                       "--no-diagnostics", "--no-progress", "--epochs", "1",
                       "--out", str(tmp_path / "run")]) == 0
    assert "after 1 epochs" in capsys.readouterr().out
    cfg, net = runio.load_run(tmp_path / "run")
    assert cfg.simulator == "spice" and not net.nonfinite_weights()
    assert len((tmp_path / "run" / runio.METRICS).read_text().splitlines()) == 3


def test_training_with_spice_on_hardware_matches_ode(tmp_path):
    """``train --simulator spice --hardware pcm``: every minibatch's weights are written through
    the chip's devices (the named stream, as on the ODE path) and its wake phase runs in the
    circuit of the chip's effective network; one epoch of two minibatches ends at the ODE run's
    weights up to the circuit's update error (ΔW within ~1e-4 of itself: the weights move 5 %,
    the two runs differ by 6e-6; asserted at 1e-3 of the move)."""
    from dfc_analog import runio
    from dfc_analog.train import main as train_main
    args = ["--train-samples", "8", "--val-samples", "4", "--test-samples", "4",
            "--batch-size", "4", "--threads", "1", "--no-diagnostics", "--no-progress",
            "--dtype", "float64", "--epochs", "1", "--hardware", "pcm",
            "--hardware-v-scale", "0.25"]
    assert train_main(args + ["--simulator", "spice", "--out", str(tmp_path / "spice")]) == 0
    assert train_main(args + ["--out", str(tmp_path / "ode")]) == 0
    from dfc_analog.config.seeds import generator
    from dfc_analog.model.network import DFCNetwork
    cfg, spice = runio.load_run(tmp_path / "spice")
    _, ode = runio.load_run(tmp_path / "ode")
    start = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    assert cfg.simulator == "spice" and cfg.hardware == "pcm"
    with torch.no_grad():
        for a, b, w0 in zip(spice.W, ode.W, start.W):
            assert float((a - b).norm()) < 1e-3 * float((b - w0).norm())


@pytest.mark.slow
def test_training_with_spice_in_the_loop_resumes_and_matches_ode(tmp_path, capsys):
    """``train --simulator spice``: two epochs on a small subset; a run stopped after one epoch
    and resumed ends with the same weights; the trained network's per-sample ΔW from the
    circuit agrees with the ODE path (angle ≤ 1°)."""
    from dfc_analog import runio
    from dfc_analog.train import main as train_main
    args = ["--simulator", "spice", "--train-samples", "12", "--val-samples", "4",
            "--test-samples", "4", "--batch-size", "6", "--threads", "2", "--no-diagnostics",
            "--no-progress", "--dtype", "float64"]
    assert train_main(args + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert train_main(args + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert train_main(["--resume", str(tmp_path / "b"), "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "after 2 epochs" in out
    cfg, net = runio.load_run(tmp_path / "a")
    _, resumed = runio.load_run(tmp_path / "b")
    for a, b in zip(list(net.W) + list(net.b), list(resumed.W) + list(resumed.b)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    rows = (tmp_path / "a" / runio.METRICS).read_text().splitlines()
    assert cfg.simulator == "spice" and len(rows) == 4        # header, epochs 0, 1, 2
    from dfc_analog.data import load_dataset
    data = load_dataset(cfg)
    settings = ForwardSettings.from_config(cfg)
    with SpiceWake(settings, workers=1) as wake:
        for b in range(2):
            x, y = data.train.x[b:b + 1], data.train.y[b:b + 1]
            got, ref = wake(net, x, y), forward_update(net, x, y, settings)
            assert update_angle(ref.gW + ref.gb, got.gW + got.gb)[0] <= 1.0


def test_spice_training_refuses_with_one_sentence():
    from dfc_analog.config.options import Config
    with pytest.raises(ConfigError, match="use method 'dfc'"):
        Config.from_dict({"simulator": "spice", "method": "dfc-ssa"})
    with pytest.raises(ConfigError, match="toy scale"):
        Config.from_dict({"simulator": "spice", "layer_sizes": [784, 100, 10],
                          "activations": ["tanh", "linear"], "dataset": "mnist",
                          "loss": "cross_entropy"})


def test_export_circuit_target_and_plasticity(tmp_path, capsys):
    """``dfc-export --target circuit --plasticity circuit``: the wake netlist carries x, y and
    the weights only; it runs, and its integrators give the update of the same sample's
    learning_phase (the same circuit built in the library)."""
    from dfc_analog.circuit.learning import integrator_names
    from dfc_analog.runio import load_run
    from tests.test_netlist import make_run_dir, run_cli
    run = make_run_dir(tmp_path / "run")
    code, out, err = run_cli(["--netlist", tmp_path / "l.cir", "--target", "circuit",
                              "--plasticity", "circuit", "--sample", 1, "--t-end", 2, run],
                             capsys)
    assert code == 0, err
    assert "weight_integrator 300" in out and "hold 5" in out
    text = (tmp_path / "l.cir").read_text()
    assert not re.search(r"^Vctl_target", text, re.M)
    assert re.search(r"^Bctl_target_0 ctl_target_0 0 V = ", text, re.M)
    assert re.search(r"^Vctl_label_4 ", text, re.M) and re.search(r"^Bl3_dw_4_9 ", text, re.M)
    code, _, err = run_cli(["--netlist", tmp_path / "o.cir", "--target", "circuit", "--phase",
                            "op", run], capsys)
    assert code == 2 and "describe the wake phase" in err
    cfg, net = load_run(run)
    names = integrator_names(net.layer_sizes, True)
    data = run_netlist(text, names[:3])
    from dfc_analog.data import load_dataset
    split = load_dataset(cfg).test
    phase = learning_phase(net.double(), split.x[1], split.y[1], ForwardSettings.from_config(
        cfg.replace(t_end=2.0)), np.linspace(0, 2.0, 101))
    got = -2.0 * np.array([data[n][-1] for n in names[:3]])
    np.testing.assert_allclose(got, phase.update[0][0, :3].numpy(), rtol=1e-6, atol=1e-12)


SLEEP_RUN = {"layer_sizes": [15, 10, 10, 5], "train_samples": 8, "val_samples": 4,
             "test_samples": 4, "batch_size": 4, "threads": 1, "diagnostics": False,
             "dtype": "float64", "epochs": 1, "train_feedback": True, "sleep_epochs_init": 1,
             "sleep_epochs": 1, "fb_lr_init": 0.02}


def continuous_sleep(p):
    """The model's sleep phase in the Δt → 0 limit on the noise path it draws from the
    generator (tests.test_circuit_sleep: Richardson 2 g(Δt/16) - g(Δt/8) on the zero-order hold
    of the same draws), as run_training's ``sleep``."""
    from dfc_analog.learning.sleep import draw_noise
    from tests.test_circuit_sleep import REFINE, refined_model

    def sleep(net, x, generator):
        xi = draw_noise((p.steps, x.shape[0], sum(net.layer_sizes[1:])), generator, x.device)
        fine, coarse = (refined_model(net, x, p, xi, m) for m in (REFINE, REFINE // 2))
        return [2 * a - b for a, b in zip(fine, coarse)]
    return sleep


def moved(nets, start, attr):
    """|a - b| / |b - start| of the weights ``attr`` of two trained networks (a, b)."""
    a, b = (torch.cat([w.detach().reshape(-1) for w in getattr(n, attr)]) for n in nets)
    w0 = torch.cat([w.detach().reshape(-1) for w in getattr(start, attr)])
    return float((a - b).norm() / (b - w0).norm())


def spice_against_continuous(cfg, tmp_path, phase_names: set, **continuous) -> tuple:
    """``cfg`` trained three times from one seed: with its phases ``phase_names`` in ngspice
    (:func:`circuit_phases`), with the ODE whose phases are the model in the Δt → 0 limit on
    the same noise paths (``continuous``: run_training's ``sleep=`` or ``single=``), and with
    the ODE at the model's own Δt. Returns ((spice, ode, coarse) networks, the start)."""
    from dfc_analog.circuit.learning import circuit_phases
    from dfc_analog.config.seeds import generator
    from dfc_analog.training.loop import run_training
    from dfc_analog import runio
    with circuit_phases(cfg.replace(simulator="spice")) as phases:
        assert set(phases) == phase_names
        run_training(cfg.replace(simulator="spice"), tmp_path / "spice", progress=False,
                     **phases)
    run_training(cfg, tmp_path / "ode", progress=False, **continuous)
    run_training(cfg, tmp_path / "coarse", progress=False)
    nets = tuple(runio.load_run(tmp_path / name)[1] for name in ("spice", "ode", "coarse"))
    return nets, DFCNetwork.from_config(cfg, generator("network", cfg.seed))


def resume_matches(cfg, tmp_path, stopped_at: tuple) -> None:
    """The run ``tmp_path/b``, interrupted at (pass, minibatch) ``stopped_at``, resumed with
    fresh ngspice processes, ends with the uninterrupted run ``tmp_path/a``'s W, b and Q
    (1e-9)."""
    from dfc_analog.circuit.learning import circuit_phases
    from dfc_analog.training.loop import run_training
    from dfc_analog import runio
    state = runio.load_checkpoint(tmp_path / "b")
    assert (state["pass"], state["batch"]) == stopped_at
    with circuit_phases(cfg) as phases:
        run_training(cfg, tmp_path / "b", resume=True, progress=False, **phases)
    _, a = runio.load_run(tmp_path / "a")
    _, b = runio.load_run(tmp_path / "b")
    for x, y in zip(list(a.W) + list(a.b) + list(a.Q), list(b.W) + list(b.b) + list(b.Q)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_training_with_spice_sleep_matches_ode(tmp_path):
    """``simulator = 'spice'`` with trained feedback: the pre-training and sleep passes run in
    ngspice on the model's noise path (same seed, stream 'sleep_noise' by pass and minibatch),
    and the run ends at the ODE run's Q and W when the ODE run's sleep phase is the model in the
    Δt → 0 limit on that path (:func:`continuous_sleep`). Tolerances, relative to how far the
    weights moved: Q within ngspice's reltol 1e-3 (each circuit sleep update is within it of
    that limit, test_circuit_sleep; SGD is linear in the updates); W within 1e-2, the wake
    update's bound (test_circuit_update_matches_ode). Measured: Q 8.6e-5, W 3.7e-4. The ODE run
    with the model's own Δt_fb (the default) misses the circuit's Q by the Euler–Maruyama gap
    (measured 5.1 %): more than 10 times Q's tolerance."""
    from dfc_analog.config.options import Config
    from dfc_analog.learning.sleep import SleepParams
    cfg = Config.from_dict(SLEEP_RUN)
    (spice, ode, coarse), start = spice_against_continuous(
        cfg, tmp_path, {"wake", "sleep"}, sleep=continuous_sleep(SleepParams.from_config(cfg)))
    assert moved([spice, ode], start, "Q") <= 1e-3
    assert moved([spice, ode], start, "W") <= 1e-2
    assert moved([spice, coarse], start, "Q") > 1e-2



def test_spice_sleep_minibatch_and_alter(one_thread):
    """The persistent-process sleep phase on a minibatch, split over two processes: each
    sample's circuit, its weights and noise sources altered, is the freshly written circuit of
    :func:`sleep_phase` on the same noise draws (ξ from the generator as feedback_update draws
    them), to the digits ngspice prints (1e-9 relative; measured 2e-13), and so within reltol
    of the model's Δt → 0 limit on that path (:func:`continuous_sleep`), also after Q and W
    change."""
    from dfc_analog.circuit.learning import SpiceSleep, sleep_phase
    from dfc_analog.config.seeds import generator
    from dfc_analog.learning.sleep import SleepParams, draw_noise
    net, _, _ = toy()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 15, generator=gen, dtype=torch.float64) * 2 - 1
    p = SleepParams()
    with SpiceSleep(p, workers=2) as sleep:
        for step in range(2):
            got = sleep(net, x, generator("sleep_noise", 1, step, 0))
            if step == 0:
                xi = draw_noise((p.steps, 2, 25), generator("sleep_noise", 1, step, 0))
                fresh = [sleep_phase(net, x[b], p, xi[:, b]).update for b in range(2)]
                for g, a, b in zip(got, *fresh):
                    torch.testing.assert_close(g, (a + b) / 2, rtol=1e-9, atol=1e-12)
            limit = continuous_sleep(p)(net, x, generator("sleep_noise", 1, step, 0))
            angle, rel = update_angle(limit, got)
            assert angle <= 0.057 and rel <= 1e-3, (step, angle, rel)
            with torch.no_grad():
                net.W[1].mul_(-0.5)
                net.Q[0].mul_(1.3)
        assert len(sleep.processes) == 2


@pytest.mark.slow
def test_spice_sleep_resumes_exactly(tmp_path):
    """A ``simulator = 'spice'`` run with sleep passes (two epochs) interrupted in the middle of
    its second epoch's sleep pass (Ctrl-C: a checkpoint at the minibatch) and resumed (fresh
    ngspice processes) ends with the uninterrupted run's weights (1e-9): the noise of each sleep
    minibatch is a function of seed, pass and minibatch, and the altered circuit is the written
    one."""
    from dfc_analog.circuit.learning import circuit_phases
    from dfc_analog.config.options import Config
    from dfc_analog.training.loop import run_training
    cfg = Config.from_dict({**SLEEP_RUN, "simulator": "spice", "threads": 2, "epochs": 2})
    with circuit_phases(cfg) as phases:
        run_training(cfg, tmp_path / "a", progress=False, **phases)
    calls = []
    with circuit_phases(cfg) as phases:
        sleep = phases["sleep"]

        def interrupted(net, x, generator):
            calls.append(1)
            if len(calls) == 6:          # pass 4 (epoch 2's sleep pass), minibatch 2
                raise KeyboardInterrupt
            return sleep(net, x, generator)
        with pytest.raises(KeyboardInterrupt):
            run_training(cfg, tmp_path / "b", progress=False, wake=phases["wake"],
                         sleep=interrupted)
    resume_matches(cfg, tmp_path, (3, 1))


def test_spice_sleep_refuses_with_one_sentence(tmp_path):
    """Bad input to the SPICE sleep phase gets one sentence; with sleep 'expected' the run
    takes only the circuit's wake phase (the expected sleep is the model's closed form)."""
    from dfc_analog.circuit.learning import SpiceSleep, SpiceWake, circuit_phases
    from dfc_analog.config.options import Config
    from dfc_analog.learning.sleep import SleepParams
    from dfc_analog.training.loop import run_training
    with pytest.raises(ConfigError, match="at least one worker"):
        SpiceSleep(SleepParams(), workers=0)
    cfg = Config.from_dict({**SLEEP_RUN, "simulator": "spice"})
    with circuit_phases(cfg.replace(sleep="expected")) as phases:
        assert set(phases) == {"wake"}
    with SpiceWake(ForwardSettings.from_config(cfg)) as wake:
        with pytest.raises(ConfigError, match="circuit's phases"):
            run_training(cfg, tmp_path / "run", progress=False, wake=wake)
    net, x, _ = toy()
    with SpiceSleep(SleepParams()) as sleep:
        sleep(net, x, torch.Generator().manual_seed(0))
        with pytest.raises(ConfigError, match="another network"):
            sleep(DFCNetwork([3, 2], ["linear"], dtype=torch.float64),
                  torch.zeros(1, 3, dtype=torch.float64), torch.Generator())
