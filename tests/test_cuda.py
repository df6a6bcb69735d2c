"""The CUDA path gives the CPU path's numbers: the feed-forward pass, the wake dynamics with every
solver, every forward rule, Lemma 1's steady state, the sleep phase (simulated and its expected
update in closed form), the single phase, the hardware emulation with both of its solvers,
training on a chip and with the single-phase schedule, and a training run whose folder reads
back on a machine without a GPU.

Skipped where torch sees no CUDA device. ``DFC_TEST_DEVICE=cpu`` runs the file against the CPU
itself, which checks the tests' own code on a machine without a GPU.
"""
import copy
import os

import pytest
import torch

from dfc_analog import (Config, ControllerParams, ForwardSettings, SleepParams, SolverSettings, feedback_update,
                        forward_update, lemma1_control, load_run, output_target, run_training,
                        simulate_wake)
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.learning import sleep as sleep_module
from dfc_analog.learning.single_phase import SinglePhaseParams, single_phase_update
from dfc_analog.learning.sleep_expected import FeedbackJacobians, expected_feedback_update
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.evaluate import evaluate_run

from tests.conftest import angle_deg, update_vector

DEVICE = os.environ.get("DFC_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="needs a CUDA device")

PARAMS = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
DTYPES = [torch.float64, torch.float32]
# Agreement across devices: float64 to rounding; float32 to its own digits. Adaptive solvers may
# take a step more or less on either device, so their results agree to the solver tolerance.
EXACT = {torch.float64: 1e-10, torch.float32: 1e-4}


def on_both(make_net, batch, dtype, sizes=(15, 10, 10, 5), B=16):
    """The same network and minibatch on the CPU and on the device under test."""
    net = make_net(sizes=sizes, dtype=dtype)
    x, y = (a.to(dtype) for a in batch(n_in=sizes[0], n_out=sizes[-1], B=B))
    return (net, x, y), (net_copy(net), x.to(DEVICE), y.to(DEVICE))


def net_copy(net):
    return copy.deepcopy(net).to(DEVICE)


def target(net, x, y, lam=0.05):
    with torch.no_grad():
        _, r_ff = net.feedforward(x)
        return output_target(r_ff[-1], y, "mse", "sample", lam)


def close(a, b, rel):
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    assert float((a - b).norm()) <= rel * float(b.norm()) + 1e-30, (float((a - b).norm()),
                                                                    float(b.norm()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_feedforward_pass(make_net, batch, dtype):
    (net, x, _), (dnet, dx, _) = on_both(make_net, batch, dtype)
    v, r = net.feedforward(x)
    dv, dr = dnet.feedforward(dx)
    assert dr[-1].device.type == torch.device(DEVICE).type and dr[-1].dtype == dtype
    for a, b in zip(dv + dr, v + r):
        close(a, b, EXACT[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", [SolverSettings("rosenbrock", 1e-6, 1e-8),
                                    SolverSettings("dopri5", 1e-6, 1e-8),
                                    SolverSettings("authors-euler", step_size=0.01),
                                    SolverSettings("rk4", step_size=0.05)],
                         ids=lambda s: s.method)
def test_wake_phase_and_trajectory(make_net, batch, dtype, solver):
    (net, x, y), (dnet, dx, dy) = on_both(make_net, batch, dtype)
    times = torch.linspace(0, 3, 7, dtype=dtype)
    cpu = simulate_wake(net, x, target(net, x, y)[0], PARAMS, solver, 3.0, times=times)
    dev = simulate_wake(dnet, dx, target(dnet, dx, dy)[0], PARAMS, solver, 3.0,
                        times=times.to(DEVICE))
    assert dev.u.device.type == torch.device(DEVICE).type and dev.u.dtype == dtype
    fixed = solver.method in ("authors-euler", "rk4")
    rel = EXACT[dtype] if fixed and dtype == torch.float64 else 1e-3
    close(dev.u, cpu.u, rel)
    for a, b in zip(dev.trajectory.rate, cpu.trajectory.rate):
        close(a - a[0], b - b[0], rel)
    if fixed:
        assert dev.nfe == cpu.nfe


@pytest.mark.parametrize("dtype", DTYPES)
def test_lemma1_steady_state(make_net, batch, dtype):
    """Lemma 1 on the device: the controlled dynamics settle where eq. (6) puts them."""
    _, (dnet, dx, dy) = on_both(make_net, batch, dtype)
    r_star, delta = target(dnet, dx, dy, lam=1e-3)
    wake = simulate_wake(dnet, dx, r_star, PARAMS, SolverSettings("rosenbrock", 1e-7, 1e-9),
                         60.0)
    v_ff, _ = dnet.feedforward(dx)
    u_ss, _ = lemma1_control(dnet, v_ff, delta, PARAMS.alpha_eff)
    # Lemma 1's error is first order in λ: below 1e-3 of u_ss at λ = 1e-3 (tests/test_theory)
    close(wake.u, u_ss.detach(), 2e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["dfc", "dfc-ss", "dfc-ssa", "dfa", "bp"])
def test_forward_rules(make_net, batch, dtype, method):
    (net, x, y), (dnet, dx, dy) = on_both(make_net, batch, dtype)
    solver = SolverSettings("rosenbrock", 1e-5, 1e-7)
    args = (ForwardSettings(method, PARAMS, solver, 5.0, "mse", "sample", 0.05),)
    cpu = forward_update(net, x, y, *args)
    dev = forward_update(dnet, dx, dy, *args)
    assert all(g.device.type == torch.device(DEVICE).type and g.dtype == dtype
               for g in update_vector(dev))
    if method in ("dfc", "dfc-ss"):   # adaptive steps: agreement to the solver tolerance
        assert angle_deg([g.cpu() for g in update_vector(dev)], update_vector(cpu)) < 0.5
    else:
        close(torch.cat([g.reshape(-1) for g in update_vector(dev)]),
              torch.cat([g.reshape(-1) for g in update_vector(cpu)]), 10 * EXACT[dtype])
    assert abs(dev.loss - cpu.loss) <= EXACT[dtype] * abs(cpu.loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", ["integral", "total"])
def test_sleep_phase_with_the_same_noise(make_net, batch, dtype, leak, monkeypatch):
    """Fed the same Gaussian draws, the device's sleep phase (eqs. 12-13) gives the CPU's
    update; the draws come from one CPU generator, moved to where the state lives."""
    (net, x, _), (dnet, dx, _) = on_both(make_net, batch, dtype)
    p = SleepParams(leak=leak)
    randn = torch.randn

    def cpu_draws(*shape, generator=None, dtype=None, device=None, out=None):
        draws = randn(*shape, generator=torch.Generator().manual_seed(9), dtype=dtype)
        return draws.to(device) if out is None else out.copy_(draws)

    monkeypatch.setattr(torch, "randn", cpu_draws)
    cpu = feedback_update(net, x, p, torch.Generator())
    dev = feedback_update(dnet, dx, p, torch.Generator(device=DEVICE))
    monkeypatch.undo()
    for a, b in zip(dev, cpu):
        assert a.device.type == torch.device(DEVICE).type and a.dtype == dtype
        close(a, b, 1e-9 if dtype == torch.float64 else 1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sleep_phase_graph_replays_the_loop(make_net, batch, dtype, monkeypatch):
    """The sleep phase's CUDA graph gives the Python loop's numbers, also after the weights and
    the minibatch change (they are copied into the graph, not frozen in it)."""
    _, (dnet, dx, _) = on_both(make_net, batch, dtype)
    p = SleepParams()

    def run(graphs):
        monkeypatch.setattr(sleep_module, "CUDA_GRAPHS", graphs)
        return feedback_update(dnet, dx, p, torch.Generator(device=DEVICE).manual_seed(4))

    for _ in range(2):
        for a, b in zip(run(True), run(False)):
            close(a, b, 1e-10 if dtype == torch.float64 else 1e-5)
        with torch.no_grad():
            dnet.Q[0].mul_(1.5)
            dnet.W[1].mul_(0.8)
        dx = dx * 0.5


def test_training_run_reads_back_on_the_cpu(tmp_path, monkeypatch):
    """A run trained on the device (wake and sleep phases, float32, Conditions 1-3 logged)
    matches the CPU run's metrics where no noise is drawn, resumes, and loads on a machine
    without a GPU."""
    small = dict(train_samples=320, val_samples=100, test_samples=100, epochs=2,
                 diagnostics=False, dtype="float64")
    # DFC-SSA with fixed feedback draws no noise: CPU and device give the same run
    cfg = Config(**small, method="dfc-ssa")
    cpu = run_training(cfg, tmp_path / "cpu", progress=False)
    dev = run_training(cfg.replace(device=DEVICE), tmp_path / "dev", progress=False)
    for a, b in zip(dev, cpu):
        assert abs(a["test_loss"] - b["test_loss"]) <= 1e-8 * b["test_loss"]
    # DFC with trained feedback: one epoch, then resumed for a second
    run = tmp_path / "dfc"
    cfg = Config(**{**small, "epochs": 1, "dtype": "float32", "diagnostics": True},
                 method="dfc", train_feedback=True, sleep_epochs_init=1, device=DEVICE)
    run_training(cfg, run, progress=False)
    rows = run_training(cfg.replace(epochs=2), run, resume=True, progress=False)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    stored, net = load_run(run)
    assert net.device.type == "cpu" and stored.device == "cpu"
    result = evaluate_run(run)
    assert abs(result["loss"] - rows[-1]["test_loss"]) <= 1e-5 * rows[-1]["test_loss"]


def same_draws(monkeypatch, seed=9):
    """torch.randn gives every caller the draws of one CPU generator, moved to where the state
    lives: the CPU and the device see the same noise."""
    randn = torch.randn

    def cpu_draws(*shape, generator=None, dtype=None, device=None, out=None):
        draws = randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        return draws.to(device) if out is None else out.copy_(draws)

    monkeypatch.setattr(torch, "randn", cpu_draws)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("leak", ["integral", "total"])
def test_expected_sleep_update(make_net, batch, dtype, leak):
    """The closed-form expected update (Lyapunov doubling, Schur-block inverses) and its kept
    Jacobians give the CPU's numbers."""
    (net, x, _), (dnet, dx, _) = on_both(make_net, batch, dtype)
    p = SleepParams(leak=leak)
    cpu = expected_feedback_update(net, x, p)
    dev = expected_feedback_update(dnet, dx, p)
    idx = torch.arange(0, x.shape[0], 2)
    kept = FeedbackJacobians(dnet, dx, p, chunk=5).update(dnet, idx.to(DEVICE), p)
    again = expected_feedback_update(net, x[idx], p)
    rel = 1e-9 if dtype == torch.float64 else 1e-3
    for a, b, c, d in zip(dev, cpu, kept, again):
        assert a.device.type == torch.device(DEVICE).type and a.dtype == dtype
        close(a, b, rel)
        close(c, d, rel)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_phase_with_the_same_noise(make_net, batch, dtype, monkeypatch):
    """Fed the same draws, the single phase (both plasticities at once, App. C.3) gives the
    CPU's forward and feedback updates."""
    (net, x, y), (dnet, dx, dy) = on_both(make_net, batch, dtype)
    p = SinglePhaseParams(t_end=1.0, dt=0.01)
    same_draws(monkeypatch)
    cpu_fwd, cpu_Q = single_phase_update(net, x, y, p, torch.Generator())
    dev_fwd, dev_Q = single_phase_update(dnet, dx, dy, p, torch.Generator(device=DEVICE))
    monkeypatch.undo()
    rel = 1e-9 if dtype == torch.float64 else 1e-3
    close(torch.cat([g.reshape(-1) for g in update_vector(dev_fwd)]),
          torch.cat([g.reshape(-1) for g in update_vector(cpu_fwd)]), rel)
    for a, b in zip(dev_Q, cpu_Q):
        assert a.device.type == torch.device(DEVICE).type
        close(a, b, rel)


def hardware_models(make_net, dtype, preset):
    net = make_net(sizes=(15, 10, 10, 5), dtype=torch.float64)
    real = realise_network(net, load_spec(preset), seed=0, v_scale=0.5)
    return (HardwareModel(real, PARAMS, dtype=dtype),
            HardwareModel(real, PARAMS, dtype=dtype, device=DEVICE))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("preset", ["pcm", "pcm-wires", "pcm-mesh"])
@pytest.mark.parametrize("method", ["dopri5", "rosenbrock"])
def test_hardware_emulation(make_net, batch, dtype, preset, method):
    """The realised circuit's emulation (crossbars, op-amp poles, rails, wires, the op-amp
    controller) on the device: its feed-forward state to rounding and its wake transient to
    the solver's tolerance, with either solver."""
    cpu, dev = hardware_models(make_net, dtype, preset)
    x = batch(n_in=15, n_out=5, B=8)[0].to(dtype) * 0.8
    ff = cpu.feedforward(x)
    dff = dev.feedforward(x.to(DEVICE))
    assert dff["state"].device.type == torch.device(DEVICE).type
    close(dff["state"], ff["state"], EXACT[dtype])
    r_star = ff["rate"][:, -5:] + 0.05
    times = torch.linspace(0, 2, 5, dtype=torch.float64)
    tol = 1e-8 if dtype == torch.float64 else 1e-5
    a = simulate_hardware_wake(cpu, x, r_star, 2.0, times, tol, tol, method=method)
    b = simulate_hardware_wake(dev, x.to(DEVICE), r_star.to(DEVICE), 2.0, times, tol, tol,
                               method=method)
    assert b.u.device.type == torch.device(DEVICE).type and b.u.dtype == dtype
    rel = 1e-6 if dtype == torch.float64 else 1e-3
    close(b.u - b.u[0], a.u - a.u[0], rel)
    for p, q in zip(b.rate, a.rate):
        close(p - p[0], q - q[0], rel)


def test_training_on_a_chip_and_in_a_single_phase(tmp_path):
    """Training on pcm hardware (every minibatch's weights written through the devices) and
    with the single-phase schedule of DFC-SSA with the expected feedback update draw the same
    numbers on the device as on the CPU, so their runs agree."""
    small = dict(train_samples=320, val_samples=100, test_samples=100, epochs=1,
                 diagnostics=False, dtype="float64")
    for name, cfg in [("chip", Config(**small, method="dfc-ssa", hardware="pcm")),
                      ("single", Config(**small, method="dfc-ssa", train_feedback=True,
                                        sleep="expected", schedule="single-phase",
                                        sleep_epochs_init=1)),
                      ("expected", Config(**small, method="dfc-ssa", train_feedback=True,
                                          sleep="expected", sleep_epochs_init=1))]:
        cpu = run_training(cfg, tmp_path / f"{name}-cpu", progress=False)
        dev = run_training(cfg.replace(device=DEVICE), tmp_path / f"{name}-dev", progress=False)
        for a, b in zip(dev, cpu):
            assert abs(a["test_loss"] - b["test_loss"]) <= 1e-8 * b["test_loss"], name
