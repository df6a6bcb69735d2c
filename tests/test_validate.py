"""Circuit-against-model validation (dfc_analog.validate, ``dfc-validate``).

The metrics are checked against hand-computed values; the eq. (5) read-out against the training
code's own DFC update; the whole check through ngspice on a small run, at default tolerances it
must pass, and with one exported weight changed it must fail and name the signal that left first.
"""
import copy
import json
import math
import numpy as np
import pytest
import torch

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.learning import ForwardSettings, forward_update, output_target
from dfc_analog.solvers.wake import SolverSettings
from dfc_analog.circuit import SpiceOptions
from dfc_analog.circuit.graph import Scaling
from dfc_analog.learning import trajectory_update, update_angle
from dfc_analog.validate import build_parser, main
from dfc_analog.validation.compare import (GroupError, ValidationSettings, first_divergence,
                                           group_error, load_samples, reference_trajectory,
                                           spice_circuit, validate_samples)

FAST = ["--train-samples", "256", "--val-samples", "64", "--test-samples", "16", "--epochs",
        "1", "--no-progress", "--method", "dfc-ssa"]


def ngspice_missing() -> bool:
    from dfc_analog.circuit import ngspice_worker
    try:
        ngspice_worker.library_path()
    except ngspice_worker.SimulatorFailure:
        return True
    return False


needs_ngspice = pytest.mark.skipif(ngspice_missing(), reason="libngspice is not installed")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from dfc_analog.train import main as train
    out = tmp_path_factory.mktemp("validate") / "run"
    assert train(FAST + ["--out", str(out)]) == 0
    return out


def model_circuit(net, params, x, r_star, t_end, times, settings):
    """Stand-in circuit: the model itself, solved a second time at the same tolerance."""
    return reference_trajectory(net, params, x, r_star, t_end, torch.as_tensor(times),
                                settings.reference_tol)[0]


def perturbed(circuit, samples, delta):
    """``circuit`` simulating a copy of the network with one weight of W_2, row 3, changed by
    ``delta``: the one fed by the layer-1 neuron with the largest rate, so that the change
    shows in basal_2,3 = W_2[3] r_1 + b_2[3] by |delta r_1|."""
    r_1 = samples.net.feedforward(samples.x[:1])[1][0][0]
    col = int(r_1.abs().argmax())

    def simulate(net, *args):
        net = copy.deepcopy(net)
        with torch.no_grad():
            net.W[1][3, col] += delta
        return circuit(net, *args)
    return simulate


# --- metrics against hand-computed values ---------------------------------------------------

def test_group_error_by_hand():
    settings = ValidationSettings(safety=10.0,
                                  spice=SpiceOptions(reltol=1e-3, vntol=1e-6, abstol=1e-12),
                                  scaling=Scaling(resistance=1e4))
    t = np.array([0.0, 1.0, 2.0])
    ref = np.array([[0.0, 1.0], [2.0, -2.0], [1.0, 0.5]])     # range 4, peak 2
    circ = ref + np.array([[0.0, 0.0], [0.0, 0.08], [-0.004, 0.0]])
    e = group_error(ref, circ, t, peak=2.0, settings=settings)
    assert e.range == 4.0
    assert e.max == pytest.approx(0.02)
    assert e.rms == pytest.approx(math.sqrt((0.02 ** 2 + 0.001 ** 2) / 6))
    assert e.steady == pytest.approx(0.001)
    assert (e.neuron, e.t_worst) == (1, 1.0)
    floor = 1e-6 + 1e-12 * 1e4
    assert settings.floor == pytest.approx(floor)
    assert e.tol == pytest.approx(10 * (1e-3 * 2.0 + floor) / 4.0)
    assert e.t_exceed == 1.0 and not e.passed


def test_all_zero_signal_is_floored():
    settings = ValidationSettings()
    zero = np.zeros((4, 3))
    e = group_error(zero, zero + 1e-7, np.arange(4.0), peak=0.0, settings=settings)
    assert e.range == settings.floor
    assert e.tol == pytest.approx(settings.safety)        # k (reltol·0 + F) / F
    assert e.max == pytest.approx(1e-7 / settings.floor) and e.passed


def test_update_angle_by_hand():
    a = [torch.tensor([[1.0, 0.0]]), torch.tensor([0.0])]
    assert update_angle(a, [torch.tensor([[0.0, 2.0]]), torch.tensor([0.0])])[0] == \
        pytest.approx(90.0)
    angle, rel = update_angle(a, [torch.tensor([[1.0, 1.0]]), torch.tensor([0.0])])
    assert angle == pytest.approx(45.0) and rel == pytest.approx(1.0)


def test_first_divergence_follows_time_then_data_flow():
    def err(t_exceed):
        return GroupError(1.0, 0.1, 0.1, 1.0, 1.0, 0.5, 0, 0.0, t_exceed)
    errors = {"basal1": err(None), "soma1": err(0.5), "basal2": err(0.0), "u": err(0.0)}
    assert first_divergence(errors)[0] == "basal2"
    assert first_divergence({"soma1": err(None)}) is None


def test_trajectory_update_is_the_training_rule(make_net, batch):
    """eq. (5) read off a dense trajectory (trapezoid) = the training code's DFC update (step
    quadrature inside the solver), for a batch of one."""
    net = make_net()
    x, y = batch(B=1)
    params = ControllerParams()
    solver = SolverSettings("dopri5", rtol=1e-9, atol=1e-9)
    upd = forward_update(net, x, y, ForwardSettings("dfc", params, solver, 5.0, "mse", "sample", 0.05))
    r_star, _ = output_target(net.feedforward(x)[1][-1], y, "mse", "sample", 0.05)
    traj, _ = reference_trajectory(net, params, x[0], r_star[0], 5.0,
                                   torch.linspace(0, 5, 4001, dtype=torch.float64), 1e-9)
    g = trajectory_update(net, traj, x, params.plasticity)
    angle, rel = update_angle(list(upd.gW) + list(upd.gb), g)
    assert angle < 1e-3 and rel < 1e-4


# --- the check, with stand-in circuits (no simulator) ------------------------------------------

def test_identical_circuit_passes(run_dir):
    settings = ValidationSettings(points=101)
    outcome = validate_samples(load_samples(run_dir, 2, settings), settings, workers=1,
                               progress=False, circuit=model_circuit)
    assert outcome.passed
    for r in outcome.results:
        # arccos near 1 resolves no better than sqrt(2 eps) rad, about 1e-6°
        assert r.max_error < 1e-12 and r.angle_deg < 1e-4 and r.diverged is None


def test_wrong_weight_fails_and_is_named(run_dir):
    settings = ValidationSettings(points=101)
    samples = load_samples(run_dir, 1, settings)
    outcome = validate_samples(samples, settings, workers=1, progress=False,
                               circuit=perturbed(model_circuit, samples, 0.05))
    assert not outcome.passed
    r = outcome.results[0]
    name, e = r.diverged
    assert (name, e.neuron, e.t_exceed) == ("basal2", 3, 0.0)
    assert any(line.startswith("basal2") for line in r.failures)
    assert not r.signals["basal2"].passed and r.signals["basal1"].passed


# --- through ngspice ----------------------------------------------------------------------------

@needs_ngspice
def test_spice_toy_run_validates_and_detects_a_changed_weight(run_dir):
    """Default ngspice tolerances: max normalised error ≤ 1e-3, update angle ≤ 1°; the same
    netlist with one weight changed by 0.05 fails, naming basal2 neuron 3."""
    settings = ValidationSettings(points=201)
    samples = load_samples(run_dir, 1, settings)
    good = validate_samples(samples, settings, workers=1, progress=False)
    r = good.results[0]
    assert good.passed, r.failures
    assert r.max_error <= 1e-3 and r.angle_deg <= 1.0
    bad = validate_samples(samples, settings, workers=1, progress=False,
                           circuit=perturbed(spice_circuit, samples, 0.05))
    r = bad.results[0]
    assert not bad.passed
    assert r.diverged[0] == "basal2" and r.diverged[1].neuron == 3


@needs_ngspice
def test_feedforward_phase_matches_eq2(run_dir):
    settings = ValidationSettings(phase="feedforward", points=11)
    outcome = validate_samples(load_samples(run_dir, 1, settings), settings, workers=1,
                               progress=False)
    r = outcome.results[0]
    assert outcome.passed and r.max_error < 1e-6 and r.angle_deg is None
    assert not r.departures


@needs_ngspice
@pytest.mark.slow
def test_spice_tight_tolerances(run_dir):
    """reltol 1e-6: max normalised error ≤ 1e-5."""
    settings = ValidationSettings(points=201, spice=SpiceOptions(reltol=1e-6))
    outcome = validate_samples(load_samples(run_dir, 1, settings), settings, workers=1,
                               progress=False)
    r = outcome.results[0]
    assert outcome.passed, r.failures
    assert r.max_error <= 1e-5 and r.angle_deg <= 0.01


# --- the command line ----------------------------------------------------------------------------

def check_report(out, samples: int, points: int):
    report = json.loads((out / "report.json").read_text())
    assert report["pass"] and [s["index"] for s in report["samples"]] == list(range(samples))
    assert report["summary"]["max_error"] <= 1e-3
    md = (out / "report.md").read_text()
    assert "tol = k·(reltol·P + F)/R" in md
    from dfc_analog.version import __version__, git_commit
    assert report["dfc_analog_version"] == __version__ and f"dfc_analog {__version__}" in md
    assert report.get("git_commit") == git_commit()
    assert all(s["reference_solver"] == "dopri5" for s in report["samples"])
    last = samples - 1
    with np.load(out / "trajectories.npz") as data:
        circuit, reference = data[f"sample{last}_circuit_soma2"], \
            data[f"sample{last}_reference_soma2"]
        assert circuit.shape == reference.shape and circuit.shape[0] == points
    assert (out / "plots" / f"sample{last}.png").stat().st_size > 10_000


@needs_ngspice
def test_cli_writes_the_report(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = main([str(run_dir), "--samples", "1", "--workers", "1", "--points", "101", "--out",
                 str(out), "--no-progress"])
    assert code == 0, capsys.readouterr()
    assert "1/1 samples pass" in capsys.readouterr().out
    check_report(out, 1, 101)
    code = main([str(run_dir), "--sample-index", "3", "--split", "val", "--workers", "1",
                 "--points", "11", "--out", str(tmp_path / "val"), "--no-progress"])
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "val" / "report.json").read_text())
    assert report["split"] == "val" and [s["index"] for s in report["samples"]] == [3]


@needs_ngspice
@pytest.mark.slow
def test_cli_in_parallel_processes(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = main([str(run_dir), "--samples", "3", "--workers", "2", "--points", "101", "--out",
                 str(out), "--no-progress"])
    assert code == 0, capsys.readouterr()
    assert "3/3 samples pass" in capsys.readouterr().out
    check_report(out, 3, 101)


@needs_ngspice
def test_cli_exit_status_1_when_validation_fails(run_dir, tmp_path, capsys):
    """A sample that cannot pass (a tolerance k far below the simulator's error) is a real
    outcome: status 1, report written, the failing signal named."""
    out = tmp_path / "report"
    code = main([str(run_dir), "--samples", "1", "--safety", "1e-6", "--points", "51", "--out",
                 str(out), "--no-progress", "--no-plots"])
    assert code == 1
    assert "0/1 samples pass" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    assert "**FAIL**" in text and "first diverged" in text


def run_cli(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:   # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args,words", [
    (["--phase", "sleep"], ["--phase", "invalid choice"]),
    (["--samples", "0"], ["samples must be between 1 and the 16 test samples"]),
    (["--samples", "17"], ["samples must be between 1 and the 16 test samples"]),
    (["--reltol", "-1"], ["reltol must be a positive number"]),
    (["--points", "1"], ["points must be between 2"]),
    (["--workers", "0"], ["workers must be at least 1"]),
])
def test_bad_options(run_dir, tmp_path, capsys, args, words):
    code, err = run_cli(capsys, [str(run_dir), "--out", str(tmp_path / "o")] + args)
    assert code == 2 and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "o").exists()


def test_missing_run_folder(tmp_path, capsys):
    code, err = run_cli(capsys, [str(tmp_path / "nope")])
    assert code == 2 and err.strip() == f"error: run folder '{tmp_path / 'nope'}' does not exist."
    assert not (tmp_path / "nope").exists()


def test_unwritable_output_folder(run_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = run_cli(capsys, [str(run_dir), "--out", str(blocker / "report")])
    assert code == 2 and "cannot write to output folder" in err


def test_help_explains_the_options():
    out = build_parser().format_help()
    for text in ("RUN_DIR", "--samples", "--phase", "--reltol", "--vntol", "--out", "eq. (5)",
                 "Exit status"):
        assert text in out
