"""Single-phase operation on the circuit (graph.CircuitSinglePhase, netlist.single_phase_lines,
learning.single_phase): the wake phase's own target and eq. (5) integrators, the noise of
eq. (12) low-passed by τ_A into the apical sums, and eq. (13)'s integrators on the RC high-pass
of u, all at once, against the model's single phase (learning.single_phase.single_phase_update).

Tolerances, as for the sleep phase (tests/test_circuit_sleep.py). The circuit integrates in
continuous time what the model's Euler–Maruyama scheme approximates at first order in Δt: on
the same noise path (the model driven by the zero-order hold of the circuit's increments,
ξ_k/√m on each of m sub-steps) the gap falls as 1/m (toy net, PARAMS: T = 2 τ_u in 200 steps of
Δt = 0.01 = τ_v/20, τ_hp = 0.5; measured at m = 1, 8, 16: ΔW 0.25°, 0.45 % → 0.031°, 0.057 %
→ 0.015°, 0.028 %; ΔQ 1.0°, 2.3 % → 0.12°, 0.28 % → 0.063°, 0.14 %), and the Richardson extrapolation 2 g(Δt/16) -
g(Δt/8) cancels that first-order term. What is left is ngspice's own error, bounded by its
reltol 1e-3 relative: relative error ≤ 1e-3, angle ≤ 1e-3 rad = 0.057° (measured: ΔW 1e-5,
0.0005°; ΔQ 1.5e-4, 0.008°). Without noise the single phase's ΔW is the two-phase circuit wake's
(the same circuit plus elements that do not feed back), to ngspice's reltol (measured 7.6e-5).
The fb_delay gate and the training loop's SPICE single phase (SpiceSinglePhase) are held to the
same same-path tolerances; a training run compares weights relative to how far they moved.
"""
import dataclasses
import re

import numpy as np
import pytest
import torch

from dfc_analog.circuit.graph import (CircuitPlasticity, CircuitSinglePhase, CircuitTarget,
                                      Scaling, build_graph, integrator_name, single_phase_graph)
from dfc_analog.circuit.learning import (feedback_integrator_names, integrator_names,
                                         learning_phase, read_feedback_update, read_update,
                                         single_phase, single_phase_noise)
from dfc_analog.circuit.netlist import SpiceOptions, without_version, write_netlist
from dfc_analog.circuit.simulate import run_netlist
from dfc_analog.config.seeds import generator
from dfc_analog.errors import ConfigError
from dfc_analog.learning import ForwardSettings, output_target, update_angle
from dfc_analog.learning.single_phase import SinglePhaseParams, single_phase_update
from dfc_analog.model.network import DFCNetwork

from tests.test_circuit_sleep import flat
from tests.test_spice import HAVE_NGSPICE, toy

pytestmark = [pytest.mark.skipif(not HAVE_NGSPICE, reason="libngspice is not installed"),
              pytest.mark.usefixtures("one_thread")]
PARAMS = SinglePhaseParams(t_end=2.0, dt=0.01, tau_hp=0.5)
RELTOL = 1e-3        # ngspice's (SpiceOptions' default): the same-path tolerance
ANGLE = 0.057        # degrees: 1e-3 rad
REFINE = (1, 8, 16)


def refined_model(net, x, y, p: SinglePhaseParams, xi: torch.Tensor, m: int):
    """single_phase_update at Δt/m driven by the zero-order hold of the unit samples ξ
    (steps, 1, N): each step's increment σ √Δt ξ_k split into m equal sub-increments
    σ √(Δt/m) (ξ_k/√m). Returns (ΔW and Δb flattened, ΔQ flattened)."""
    fine = dataclasses.replace(p, dt=p.dt / m)
    fwd, g_Q = single_phase_update(net, x, y, fine, None,
                                   noise=xi.double().repeat_interleave(m, 0) / m ** 0.5)
    return flat(fwd.gW + fwd.gb), flat(g_Q)


def extrapolated(models: dict) -> tuple:
    """2 g(Δt/16) - g(Δt/8) of :func:`refined_model`'s updates ``models`` {m: (ΔW, ΔQ)}: the
    continuous-time updates on the zero-order hold of ξ, to second order in Δt."""
    return tuple(2 * a - b for a, b in zip(models[16], models[8]))


def circuit_updates(g, net, p, xi) -> tuple:
    """(ΔW and Δb, ΔQ) flattened, integrated by the circuit of graph ``g`` on the path ξ."""
    sizes, T = net.layer_sizes, p.steps * p.dt
    forward, feedback = integrator_names(sizes, net.has_bias), feedback_integrator_names(sizes)
    data = run_netlist(write_netlist(g, "single-phase", T, np.array([0.0, T]), 1.0,
                                     SpiceOptions(), xi[:, 0]), forward + feedback)
    values = np.array([[data[n][-1] for n in forward + feedback]])
    vs = Scaling().v_scale
    return (flat(read_update(sizes, net.has_bias, values[:, :len(forward)], vs)),
            flat(read_feedback_update(sizes, values[:, len(forward):], vs)))


def test_highpass_and_feedback_integrator_closed_form():
    """The RC high-pass and one Q integrator of the single-phase netlist, with u a step to U at
    t = 0 and v_A constant (sources on their nodes): u_hp(t) = U exp(-t/τ_hp), the model's
    u - u_lp for τ_hp du_lp = (u - u_lp) dt, and V(T) = -(v_s v_A U / σ̂²) (τ_hp/T)
    (1 - exp(-T/τ_hp)), to 1e-6 of U (the integrator's leak costs 5e-7); σ = 0.02 = σ̂."""
    net = DFCNetwork([1, 1], ["linear"], dtype=torch.float64)
    scaling = Scaling(time_scale=1e-6, v_scale=0.5, resistance=1e4)
    p = SinglePhaseParams(sigma=0.02, sigma_output=0.02, dt=0.01, t_end=2.0, tau_hp=0.4)
    v_a, U, T, tau = 0.3, -0.7, 2.0, 0.4
    text = write_netlist(single_phase_graph(net, p, scaling, [0.0], [0.0]), "single-phase", T,
                         np.array([0.0, T]), 1.0, SpiceOptions(reltol=1e-6), np.zeros((200, 1)))
    keep = [line for line in text.splitlines() if re.match(r"([CR]ctl_hp_0|[BCR]l1_dq_0_0) ",
                                                           line)]
    assert len(keep) == 5                     # C_hp, R; multiplier, capacitor, leak
    vs, ts = scaling.v_scale, scaling.time_scale
    deck = "\n".join(["* high-pass and integrator", *keep,
                      f"Va l1_apical_0 0 DC {v_a * vs!r}",
                      f"Vu ctl_u_0 0 PWL(0 0 {1e-7 * ts!r} {U * vs!r})", ".options reltol=1e-6",
                      f".tran {T * ts / 200!r} {T * ts!r} 0 {T * ts / 2000!r}", ".end", ""])
    data = run_netlist(deck, ["ctl_hp_0", "l1_dq_0_0"])
    t = data["time"] / ts
    late = t > 1e-3
    np.testing.assert_allclose(data["ctl_hp_0"][late], vs * U * np.exp(-t[late] / tau),
                               atol=1e-6 * vs * abs(U))
    want = -vs * v_a * U / p.sigma_hat ** 2 * tau / T * (1 - np.exp(-T / tau))
    assert abs(data["l1_dq_0_0"][-1] - want) <= 1e-6 * abs(want)



@pytest.fixture(scope="module")
def toy_single():
    """The toy net's single phase (PARAMS) on noise path (0, 0) of the stream
    'single_phase_circuit': (net, x, y, ξ, circuit run, {m: model updates at Δt/m})."""
    net, x, y = toy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    xi = single_phase_noise(PARAMS, net.layer_sizes, 0, 0)
    run = single_phase(net, x[0], y[0], PARAMS, xi)
    models = {m: refined_model(net, x, y, PARAMS, xi, m) for m in REFINE}
    torch.set_num_threads(threads)
    return net, x, y, xi, run, models


def test_same_noise_path(toy_single):
    """The circuit holds r_L^- and forms r* of eq. (3); driven by the same noise path, both of
    its integrator banks give the model's single-phase updates in continuous time (Richardson
    from Δt/8 and Δt/16) to ngspice's reltol, while the model's own scheme is first order: its
    gap to the circuit falls eightfold from Δt to Δt/8 and twofold from Δt/8 to Δt/16."""
    net, x, y, xi, run, models = toy_single
    with torch.no_grad():
        r_ff = net.feedforward(x)[1][-1]
    r_star = output_target(r_ff, y, PARAMS.loss, PARAMS.reduction, PARAMS.target_stepsize)[0]
    assert np.abs(run.held - r_ff[0].numpy()).max() <= 1e-9 * float(r_ff.abs().max())
    assert np.abs(run.target - r_star[0].numpy()).max() <= 1e-9 * float(r_star.abs().max())
    got = (flat(run.update), flat(run.feedback_update))
    for want, have in zip(extrapolated(models), got):
        angle, rel = update_angle(want, have)
        assert angle <= ANGLE and rel <= RELTOL, (angle, rel)
    for k in range(2):
        gap = [update_angle(models[m][k], got[k])[1] for m in REFINE]
        assert 7.0 < gap[0] / gap[1] < 9.0 and 1.8 < gap[1] / gap[2] < 2.2, gap
    assert update_angle(models[1][1], got[1])[1] > 10 * RELTOL      # ΔQ at the model's Δt


def test_seed_stream_is_the_models_generator():
    """single_phase_update with generator('single_phase_circuit', seed, sample) draws the ξ of
    single_phase_noise(p, sizes, seed, sample): the circuit's path."""
    net, x, y = toy()
    p = dataclasses.replace(PARAMS, t_end=0.1)
    xi = single_phase_noise(p, net.layer_sizes, 2, 5)
    a = single_phase_update(net, x, y, p, generator("single_phase_circuit", 2, 5))
    b = single_phase_update(net, x, y, p, None, noise=xi.double())
    torch.testing.assert_close(flat(a[0].gW + a[1]), flat(b[0].gW + b[1]), rtol=0, atol=0)


def test_without_noise_dW_is_the_wake_circuits():
    """σ = σ_L = 0: the single phase's ΔW is the two-phase circuit wake's (learning_phase, the
    same controller and T) to ngspice's reltol; its ΔQ is then eq. (13) of the task's control
    alone (-Q u u_hpᵀ), not zero."""
    net, x, y = toy()
    p = dataclasses.replace(PARAMS, t_end=1.0, sigma=0.0, sigma_output=0.0)
    run = single_phase(net, x[0], y[0], p, np.zeros((p.steps, 25)))
    settings = ForwardSettings(params=CircuitSinglePhase(p).controller(), t_end=p.steps * p.dt,
                               target_stepsize=p.target_stepsize)
    wake = learning_phase(net, x[0], y[0], settings, np.array([0.0, p.steps * p.dt]))
    angle, rel = update_angle(run.update, wake.update)
    assert angle <= ANGLE and rel <= RELTOL, (angle, rel)
    assert float(flat(run.feedback_update).abs().max()) > 0


def test_perturbed_circuit_fails(toy_single):
    """The high-pass and the W integrators feed nothing back, so one circuit can carry two
    faults that each show in one update only: τ_hp 20 % too long breaks ΔQ, the gain of the
    integrator of the largest ΔW entry 3 % off breaks ΔW entrywise (each entry within reltol
    of the largest); with that one reading undone, ΔW is within tolerance again: τ_hp does not
    touch it."""
    net, x, y, xi, run, models = toy_single
    want_w, want_q = extrapolated(models)
    bound = RELTOL * float(want_w.abs().max())
    assert float((flat(run.update) - want_w).abs().max()) <= bound
    g = single_phase_graph(net, PARAMS, Scaling(), x[0], y[0])
    for m in range(net.layer_sizes[-1]):
        g.nodes[f"ctl_hp_{m}"]["C"] *= 1.2
    largest = integrator_names(net.layer_sizes, net.has_bias)[int(want_w.abs().argmax())]
    g.nodes[largest]["G"] *= 1.03
    bad_w, bad_q = circuit_updates(g, net, PARAMS, xi)
    assert float((bad_w - want_w).abs().max()) > bound
    assert update_angle(want_q, bad_q)[1] > 10 * RELTOL
    good = bad_w.clone()
    good[int(want_w.abs().argmax())] /= 1.03
    assert float((good - want_w).abs().max()) <= bound


DELAYED = dataclasses.replace(PARAMS, fb_delay=0.503)     # fb_start 50: t_d = 0.5 on the grid


def test_fb_delay_switch_same_noise_path():
    """fb_delay: the circuit's eq. (13) integrators switch on at t_on + t_d, t_d = fb_start · Δt
    the model's rounding of fb_delay (0.503 → 0.5 at Δt = 0.01: the gate's edge ends at
    t_on + 0.5 τ_u exactly), and integrate over T - t_d; on the same noise path both updates
    equal the model's in continuous time (Richardson as in :func:`test_same_noise_path`, the
    model at Δt/8 and Δt/16 with fb_delay 0.5, where fb_start is 400 and 800) to ngspice's
    reltol (measured: ΔW 5e-6, 0.0003°; ΔQ 1.3e-4, 0.007°). The same circuit with the gate 20 %
    late (t_d 0.6) misses ΔQ by more than ten times the tolerance (measured 8.3 %, 4.7°) and
    leaves ΔW as it was (the gate feeds nothing back). (The gate at the unrounded 0.503 misses
    ΔQ by 2.2e-3, above reltol: the rounding to the grid matters.)"""
    net, x, y = toy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xi = single_phase_noise(DELAYED, net.layer_sizes, 0, 1)
        g = single_phase_graph(net, DELAYED, Scaling(), x[0], y[0])
        assert g.nodes["ctl_fbgate"]["delay"] == pytest.approx(0.5, abs=1e-12)
        assert "ctl_fbgate" not in single_phase_graph(net, PARAMS, Scaling(), x[0], y[0])
        text = write_netlist(g, "single-phase", 2.0, np.array([0.0, 2.0]), 1.0, SpiceOptions(),
                             xi[:, 0])
        ts = Scaling().time_scale
        gate = re.search(r"^Vctl_fbgate ctl_fbgate 0 PWL\(0 0 (\S+) 0 (\S+) 1\)$", text, re.M)
        assert float(gate.group(2)) == pytest.approx(1.5 * ts, rel=1e-12)
        assert re.search(r"^Bl2_dq_3_4 0 l2_dq_3_4 I = .*V\(ctl_hp_4\)\*V\(ctl_fbgate\)$", text,
                         re.M)
        run = single_phase(net, x[0], y[0], DELAYED, xi)
        on_grid = dataclasses.replace(DELAYED, fb_delay=0.5)
        want = extrapolated({m: refined_model(net, x[:1], y[:1], on_grid, xi, m)
                             for m in REFINE[1:]})
        got = (flat(run.update), flat(run.feedback_update))
        for w, h in zip(want, got):
            angle, rel = update_angle(w, h)
            assert angle <= ANGLE and rel <= RELTOL, (angle, rel)
        g.nodes["ctl_fbgate"]["delay"] *= 1.2
        late_w, late_q = circuit_updates(g, net, DELAYED, xi)
    finally:
        torch.set_num_threads(threads)
    assert update_angle(want[1], late_q)[1] > 10 * RELTOL
    angle, rel = update_angle(want[0], late_w)
    assert angle <= ANGLE and rel <= RELTOL, (angle, rel)


def test_export_single_phase(tmp_path, capsys):
    """``dfc-export --phase single-phase --plasticity circuit --noise-seed S`` writes the
    library's single-phase circuit (single_phase's netlist) for the sample, its label and the
    noise draw (S, sample) with the run's wake constants and τ_hp; ``--trnoise`` writes TRNOISE
    sources; bad combinations get one sentence."""
    from dfc_analog.data import load_dataset
    from dfc_analog.runio import load_run
    from tests.test_netlist import make_run_dir, run_cli
    run = make_run_dir(tmp_path / "run", tau_hp=0.7)
    code, out, err = run_cli(["--netlist", tmp_path / "s.cir", "--phase", "single-phase",
                              "--plasticity", "circuit", "--noise-seed", 3, "--sample", 1,
                              "--t-end", 0.5, run], capsys)
    assert code == 0, err
    assert "feedback_integrator 125" in out and "weight_integrator 300" in out and \
        "noise 25" in out and "highpass 5" in out
    text = (tmp_path / "s.cir").read_text()
    assert " TRNOISE(" not in text and re.search(r"^Vl2_noise_4 l2_noise_4 0 PWL\(", text, re.M)
    assert re.search(r"^Bl1_dq_0_0 0 l1_dq_0_0 I = .*V\(ctl_hp_0\)$", text, re.M)
    cfg, net = load_run(run)
    p = dataclasses.replace(SinglePhaseParams.from_config(cfg), t_end=0.5)
    assert p.tau_hp == 0.7
    data = load_dataset(cfg).test
    g = single_phase_graph(net.double(), p, Scaling(), data.x[1], data.y[1])
    library = write_netlist(g, "single-phase", p.steps * p.dt,
                            np.linspace(0.0, p.steps * p.dt, 101), 1.0, SpiceOptions(),
                            single_phase_noise(p, net.layer_sizes, 3, 1)[:, 0])
    assert without_version(text) == without_version(library)
    code, _, err = run_cli(["--netlist", tmp_path / "t.cir", "--phase", "single-phase",
                            "--trnoise", "--t-end", 0.05, run], capsys)
    assert code == 0, err
    text = (tmp_path / "t.cir").read_text()
    assert " TRNOISE(1 " in text and "_dq_" not in text and "_dw_" not in text
    np.save(tmp_path / "x.npy", np.zeros(15))
    for args, message in ((["--phase", "single-phase", "--target", "circuit"], "circuit's own"),
                          (["--phase", "single-phase", "--sample", tmp_path / "x.npy"],
                           "label"),
                          (["--phase", "single-phase", "--trnoise", "--noise-seed", 2],
                           "not both"),
                          (["--phase", "single-phase", "--hardware", "pcm"], "ideal netlist"),
                          (["--phase", "single-phase", "--t-end", 0], "positive"),
                          (["--phase", "wake", "--noise-seed", 2], "single-phase")):
        code, _, err = run_cli(["--netlist", tmp_path / "x.cir", *args, run], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


def test_single_phase_circuit_refuses_with_one_sentence():
    net, x, y = toy()
    p = PARAMS
    single = CircuitSinglePhase(p)
    target = CircuitTarget()
    plasticity = CircuitPlasticity("rate", single.window)
    with pytest.raises(ConfigError, match="circuit's own"):
        build_graph(net, single.controller(), plasticity=plasticity, single=single)
    with pytest.raises(ConfigError, match="its own parameters"):
        build_graph(net, dataclasses.replace(single.controller(), k_p=1.0), target=target,
                    plasticity=plasticity, single=single)
    with pytest.raises(ConfigError, match="whole window"):
        build_graph(net, single.controller(), target=target,
                    plasticity=CircuitPlasticity("rate", 1.0), single=single)
    g = single_phase_graph(net, p, Scaling(), x[0], y[0])
    with pytest.raises(ConfigError, match="lasts its 200 noise steps"):
        write_netlist(g, "single-phase", 1.0, None, 1.0, None, np.zeros((200, 25)))
    with pytest.raises(ConfigError, match=r"must be \(200, 25\)"):
        write_netlist(g, "single-phase", 2.0, None, 1.0, None, np.zeros((199, 25)))
    with pytest.raises(ConfigError, match="single phase's circuit"):
        write_netlist(g, "wake", 2.0)
    with pytest.raises(ConfigError, match="noise must have shape"):
        single_phase_update(net, x, y, p, None, noise=torch.zeros(3, 1, 25, dtype=torch.float64))
    assert integrator_name(1, 0, 0) in g and "ctl_hp_0" in g


# --- the single phase in the training loop's SPICE path (circuit.learning.SpiceSinglePhase) ---

SHORT = SinglePhaseParams(t_end=0.5, dt=0.01, tau_hp=0.2, fb_delay=0.1)
SINGLE_RUN = {"layer_sizes": [15, 10, 10, 5], "train_samples": 8, "val_samples": 4,
              "test_samples": 4, "batch_size": 4, "threads": 1, "diagnostics": False,
              "dtype": "float64", "epochs": 1, "train_feedback": True,
              "schedule": "single-phase", "sleep_epochs_init": 0, "t_end": 1.0,
              "step_size": 0.01, "tau_hp": 0.5, "fb_delay": 0.2}


def continuous_single(p: SinglePhaseParams):
    """The model's single phase in the Δt → 0 limit on the noise path it draws from the
    generator (Richardson 2 g(Δt/16) - g(Δt/8) on the zero-order hold of the same draws, as
    :func:`extrapolated`; fb_delay on the model's grid), as run_training's ``single``."""
    from dfc_analog.learning.forward import ForwardUpdate
    from dfc_analog.learning.single_phase import draw_phase_noise
    on_grid = dataclasses.replace(p, fb_delay=p.fb_start * p.dt)

    def single(net, x, y, generator):
        xi = draw_phase_noise(p, x.shape[0], sum(net.layer_sizes[1:]), generator, x.device)
        fine, coarse = (single_phase_update(
            net, x, y, dataclasses.replace(on_grid, dt=p.dt / m), None,
            noise=xi.to(x.dtype).repeat_interleave(m, 0) / m ** 0.5) for m in (16, 8))

        def richardson(a, b):
            return [2 * u - v for u, v in zip(a, b)]
        return (ForwardUpdate(richardson(fine[0].gW, coarse[0].gW),
                              richardson(fine[0].gb, coarse[0].gb), fine[0].loss),
                richardson(fine[1], coarse[1]))
    return single


def test_spice_single_phase_minibatch_and_alter(one_thread):
    """The persistent-process single phase on a minibatch of two, split over two processes:
    each sample's circuit, its weights, inputs, labels and noise sources altered, is the freshly
    written circuit of :func:`single_phase` on the same draws (ξ from the generator as
    single_phase_update draws them) to 1e-6 of the largest entry (the pool's layer-1 synapses
    are VCCS from the input nodes, the fresh circuit's constant currents: measured 1.3e-10 ΔW,
    1.1e-9 ΔQ), and both updates are within reltol of the model's Δt → 0 limit on that path,
    also after W and Q change; the loss is the model's. (At the training trtol, the pool's
    default, the training test below.)"""
    from dfc_analog.circuit.learning import SpiceSinglePhase
    from dfc_analog.learning.single_phase import draw_phase_noise
    net, _, _ = toy()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 15, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    limit = continuous_single(SHORT)
    with SpiceSinglePhase(SHORT, workers=2, options=SpiceOptions()) as exact:
        for step in range(2):
            got = exact(net, x, y, generator("sleep_noise", 1, step, 0))
            if step == 0:
                xi = draw_phase_noise(SHORT, 2, 25, generator("sleep_noise", 1, step, 0))
                fresh = [single_phase(net, x[b], y[b], SHORT, xi[:, b], batch=2)
                         for b in range(2)]
                for have, one in ((got[0].gW + got[0].gb, [r.update for r in fresh]),
                                  (got[1], [r.feedback_update for r in fresh])):
                    want = (flat(one[0]) + flat(one[1])) / 2
                    gap = float((flat(have) - want).abs().max() / want.abs().max())
                    assert gap <= 1e-6, gap
            want = limit(net, x, y, generator("sleep_noise", 1, step, 0))
            assert got[0].loss == pytest.approx(want[0].loss, rel=1e-12)
            for w, h in ((want[0].gW + want[0].gb, got[0].gW + got[0].gb), (want[1], got[1])):
                angle, rel = update_angle(w, h)
                assert angle <= ANGLE and rel <= RELTOL, (step, angle, rel)
            with torch.no_grad():
                net.W[1].mul_(-0.5)
                net.Q[0].mul_(1.3)
        assert len(exact.processes) == 2
        with pytest.raises(ConfigError, match="another network"):
            exact(DFCNetwork([3, 2], ["linear"], dtype=torch.float64),
                  torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                  torch.Generator())


@pytest.mark.slow
def test_training_with_spice_single_phase_matches_ode(tmp_path):
    """``simulator = 'spice'`` with ``schedule = 'single-phase'``: each minibatch's samples run
    the single phase's circuit in ngspice on the model's noise path (same seed, stream
    'sleep_noise' by pass and minibatch, sample b column b), ΔW and ΔQ from its integrators
    through the same optimizer steps; one epoch (two minibatches, fb_delay 0.2) ends at the ODE
    run's W and Q when the ODE run's single phase is the model in the Δt → 0 limit on that path
    (:func:`continuous_single`). Tolerances, relative to how far the weights moved: Q within
    ngspice's reltol 1e-3 (each circuit update is within it of that limit,
    :func:`test_same_noise_path`; SGD is linear in the updates), W within 1e-2 (Adam's first
    steps normalise each entry, as in the two-phase SPICE runs); measured Q 5.5e-5, W 2.3e-5.
    The ODE run with the model's own Δt misses the circuit's Q by the Euler–Maruyama gap: more
    than five times Q's tolerance (measured 1.1e-2)."""
    from dfc_analog.config.options import Config
    from tests.test_circuit_learning import moved, spice_against_continuous
    cfg = Config.from_dict(SINGLE_RUN)
    (spice, ode, coarse), start = spice_against_continuous(
        cfg, tmp_path, {"single"}, single=continuous_single(SinglePhaseParams.from_config(cfg)))
    assert moved([spice, ode], start, "Q") <= 1e-3
    assert moved([spice, ode], start, "W") <= 1e-2
    assert moved([spice, coarse], start, "Q") > 5e-3


@pytest.mark.slow
def test_spice_single_phase_resumes_exactly(tmp_path):
    """A ``simulator = 'spice'``, ``schedule = 'single-phase'`` run of two epochs interrupted
    in the middle of its second epoch (Ctrl-C: a checkpoint at the minibatch) and resumed
    (fresh ngspice processes) ends with the uninterrupted run's W, b and Q (1e-9): the noise
    of each minibatch is a function of seed, pass and minibatch, and the altered circuit is
    the written one."""
    from dfc_analog.circuit.learning import circuit_phases
    from dfc_analog.config.options import Config
    from dfc_analog.training.loop import run_training
    from tests.test_circuit_learning import resume_matches
    cfg = Config.from_dict({**SINGLE_RUN, "simulator": "spice", "threads": 2, "epochs": 2})
    with circuit_phases(cfg) as phases:
        run_training(cfg, tmp_path / "a", progress=False, **phases)
    calls = []
    with circuit_phases(cfg) as phases:
        single = phases["single"]

        def interrupted(net, x, y, generator):
            calls.append(1)
            if len(calls) == 4:          # epoch 2, minibatch 2
                raise KeyboardInterrupt
            return single(net, x, y, generator)
        with pytest.raises(KeyboardInterrupt):
            run_training(cfg, tmp_path / "b", progress=False, single=interrupted)
    resume_matches(cfg, tmp_path, (1, 1))


def test_train_spice_single_phase_command(tmp_path, capsys):
    """``python -m dfc_analog.train --simulator spice --schedule single-phase`` writes an
    ordinary run folder whose Q moved (one epoch, one minibatch of two, fb_delay 0.1); bad
    combinations get one sentence, exit 2."""
    from dfc_analog import runio
    from dfc_analog.train import main as train_main
    args = ["--simulator", "spice", "--schedule", "single-phase", "--train-samples", "2",
            "--val-samples", "2", "--test-samples", "2", "--batch-size", "2", "--threads", "1",
            "--no-diagnostics", "--no-progress", "--epochs", "1", "--t-end", "0.5",
            "--step-size", "0.01", "--tau-hp", "0.2", "--fb-delay", "0.1"]
    assert train_main(args + ["--train-feedback", "--out", str(tmp_path / "run")]) == 0
    assert "after 1 epochs" in capsys.readouterr().out
    cfg, net = runio.load_run(tmp_path / "run")
    start = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    assert cfg.simulator == "spice" and cfg.schedule == "single-phase"
    assert not net.nonfinite_weights()
    assert all(float((q - q0).abs().max()) > 0 for q, q0 in zip(net.Q, start.Q))
    for extra, message in ((["--out", str(tmp_path / "x")], "train_feedback"),
                           (["--train-feedback", "--method", "dfc-ssa", "--sleep", "expected",
                             "--out", str(tmp_path / "y")], "use method 'dfc'")):
        assert train_main(args + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
