"""Circuit simulation through ngspice (PySpice): closed forms, the feed-forward operating point, the
wake phase against the ODE solver and Lemma 1, the standalone file under `ngspice -b`, errors.

Tolerances follow ngspice's: at reltol 1e-6 (with its derived max step) the circuit matches an
exact reference to ~1e-6 of a signal's range; at the default reltol 1e-3, to ~1e-3.
"""
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.circuit.graph import build_graph
from dfc_analog.learning import lemma1_control, output_target
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import SolverSettings, simulate_wake
from dfc_analog.circuit import (NgspiceError, SpiceOptions, operating_point, run_netlist,
                              simulate_circuit, write_netlist)
from dfc_analog.circuit.ngspice_worker import SimulatorFailure, library_path

from tests.test_netlist import make_run_dir, run_cli

try:
    library_path()
    HAVE_NGSPICE = True
except SimulatorFailure:
    HAVE_NGSPICE = False
pytestmark = pytest.mark.skipif(not HAVE_NGSPICE, reason="libngspice is not installed")
TIGHT = SpiceOptions(reltol=1e-6)


def one_neuron(w=0.5, b=0.1):
    """1-1 linear network: r = v, Q = 1."""
    net = DFCNetwork([1, 1], ["linear"], dtype=torch.float64)
    with torch.no_grad():
        net.W[0].fill_(w)
        net.b[0].fill_(b)
    return net


def test_rc_soma_step_response():
    """The soma subcircuit is eq. (1): a unit step on the basal input gives 1 - exp(-t/τ_v)."""
    params = ControllerParams(tau_v=0.2)
    g = build_graph(one_neuron(), params)
    text = write_netlist(g, "op", options=TIGHT)
    subckt = re.search(r"^\.subckt dfc_neuron_linear.*?^\.ends$", text, re.M | re.S).group(0)
    times = np.linspace(0, 1.0, 11)                       # in τ_u = 1 µs
    corners = " ".join(f"{float(1e-6 * t)!r} 1" for t in times[1:])
    deck = "\n".join(["* RC soma step", subckt,
                      f"Vb basal 0 PWL(0 0 1e-15 1 {corners})", "Va apical 0 DC 0",
                      "X1 basal apical soma rate dfc_neuron_linear",
                      ".options reltol=1e-6 chgtol=1e-17 trtol=1",
                      f".tran 1e-7 1e-6 0 {3e-3 * 0.2e-6!r}", ".end", ""])
    data = run_netlist(deck, ["soma", "rate"])
    t = data["time"] / 1e-6
    idx = [int(np.argmin(abs(t - s))) for s in times]
    np.testing.assert_allclose(t[idx], times, atol=1e-12)
    exact = 1 - np.exp(-times / 0.2)
    np.testing.assert_allclose(data["soma"][idx], exact, atol=2e-6)
    np.testing.assert_allclose(data["rate"][idx], data["soma"][idx], atol=1e-12)


@pytest.mark.parametrize("leak", ["integral", "total"])
def test_pi_loop_closed_form(leak):
    """One linear neuron under the PI controller of eq. (4): a linear ODE solved by expm."""
    p = ControllerParams(tau_v=0.2, tau_u=1.0, alpha=0.1, k_p=1.5, leak=leak)
    w, b, x, delta = 0.5, 0.1, 0.3, 0.2
    v_b = w * x + b
    r_star = v_b + delta
    # z = [v, u_int]: τ_v dv/dt = -v + v_B + u_int + k_p (r* - v);
    # τ_u du_int/dt = e - α u_int, or e - α (u_int + k_p e) = g e - α u_int with g = 1 - α k_p
    g = 1.0 if leak == "integral" else 1.0 - p.alpha * p.k_p
    A = np.array([[-(1 + p.k_p) / p.tau_v, 1 / p.tau_v], [-g / p.tau_u, -p.alpha / p.tau_u]])
    c = np.array([(v_b + p.k_p * r_star) / p.tau_v, g * r_star / p.tau_u])
    z_end = -np.linalg.solve(A, c)
    times = np.linspace(0, 3, 31)
    z = np.stack([z_end + expm(A * t) @ (np.array([v_b, 0.0]) - z_end) for t in times])
    # the fast closed-loop mode τ_v / (1 + k_p) right after the switch-on carries ngspice's
    # largest error, ~10 reltol of the range: 1.2e-5 at reltol 1e-6, 1.2e-6 at 1e-7
    traj = simulate_circuit(one_neuron(w, b), p, [x], [r_star], 3.0, times,
                            options=SpiceOptions(reltol=1e-7))
    v, u_int = traj.soma[0][:, 0, 0].numpy(), traj.u_int[:, 0, 0].numpy()
    np.testing.assert_allclose(v, z[:, 0], atol=1e-5 * np.ptp(z[:, 0]))
    np.testing.assert_allclose(u_int, z[:, 1], atol=1e-5 * np.ptp(z[:, 1]))
    e = r_star - z[:, 0]
    np.testing.assert_allclose(traj.error[:, 0, 0].numpy(), e, atol=1e-5 * np.ptp(e))
    np.testing.assert_allclose(traj.u[:, 0, 0].numpy(), z[:, 1] + p.k_p * e,
                               atol=1e-5 * np.ptp(z[:, 1] + p.k_p * e))


def toy(seed=0):
    gen = torch.Generator().manual_seed(seed)
    net = DFCNetwork([15, 10, 10, 5], ["tanh", "tanh", "linear"], dtype=torch.float64,
                     generator=gen)
    with torch.no_grad():
        for bias in net.b:
            bias.normal_(0.0, 0.3, generator=gen)
    x = torch.rand(1, 15, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.randn(1, 5, generator=gen, dtype=torch.float64)
    return net, x, y


def test_operating_point_is_the_forward_pass():
    net, x, _ = toy()
    params = ControllerParams()
    op = operating_point(net, params, x[0])
    v_ff, r_ff = net.feedforward(x)
    for i in range(3):
        for got, want in ((op.soma[i][0], v_ff[i]), (op.rate[i][0], r_ff[i]),
                          (op.basal[i][0], v_ff[i])):
            want = want.detach()
            assert float((got - want).abs().max()) <= 1e-6 * float(want.abs().max())
    assert float(op.u.abs().max()) == 0 and float(op.apical[0].abs().max()) == 0


def group_errors(circuit, ode) -> dict:
    """max |circuit - ode| / range of the ODE signal, per signal group (all layers together)."""
    out = {}
    for name in ("soma", "basal", "apical", "rate", "u", "u_int", "error"):
        a, b = getattr(circuit, name), getattr(ode, name)
        if isinstance(a, list):
            a, b = torch.cat(a, dim=2), torch.cat(b, dim=2)
        out[name] = float((a - b).abs().max() / (b.max() - b.min()))
    return out


@pytest.mark.parametrize("leak", ["integral", "total"])
def test_wake_phase_matches_ode_and_lemma1(leak):
    net, x, y = toy()
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5, leak=leak)
    v_ff, r_ff = net.feedforward(x)
    r_star, delta = output_target(r_ff[-1].detach(), y, "mse", "sample", 0.01)
    t_end = 15.0
    times = torch.linspace(0, t_end, 61, dtype=torch.float64)
    circuit = simulate_circuit(net, params, x[0], r_star[0], t_end, times, options=TIGHT)
    ode = simulate_wake(net, x, r_star, params, SolverSettings("dopri5", 1e-10, 1e-10), t_end,
                        times=times).trajectory
    assert circuit.t.shape == (61,) and circuit.soma[1].shape == (61, 1, 10)
    assert circuit.u.dtype == torch.float64
    errors = group_errors(circuit, ode)
    assert max(errors.values()) <= 1e-5, errors
    # Lemma 1: the output settles at r* - α̃ u (up to the last slow mode, ~1e-4 δ after 15 τ_u,
    # the same in the ODE), with u = (JQ + α̃ I)^-1 δ to first order in δ
    r_L, u = circuit.rate[-1][-1], circuit.u[-1]
    a = params.alpha_eff
    residual = r_L - (r_star - a * u)
    assert float(residual.abs().max()) <= 1e-3 * float(delta.abs().max())
    ode_residual = ode.rate[-1][-1] - (r_star - a * ode.u[-1])
    assert float((residual - ode_residual).abs().max()) <= 1e-5 * float(delta.abs().max())
    u_lemma, _ = lemma1_control(net, [v.detach() for v in v_ff], delta, a)
    assert float((u - u_lemma).norm() / u_lemma.norm()) < 0.02


def test_default_tolerances_give_about_reltol():
    net, x, y = toy()
    params = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5)
    _, r_ff = net.feedforward(x)
    r_star, _ = output_target(r_ff[-1].detach(), y, "mse", "sample", 0.05)
    times = torch.linspace(0, 5, 26, dtype=torch.float64)
    circuit = simulate_circuit(net, params, x[0], r_star[0], 5.0, times)
    ode = simulate_wake(net, x, r_star, params, SolverSettings("dopri5", 1e-10, 1e-10), 5.0,
                        times=times).trajectory
    errors = group_errors(circuit, ode)
    assert max(errors.values()) <= 1e-3, errors
    # the feed-forward phase alone stays at the operating point
    ff = simulate_circuit(net, params, x[0], None, 1.0, torch.linspace(0, 1, 3))
    assert float((ff.rate[-1] - r_ff[-1].detach()).abs().max()) <= 1e-6
    assert float(ff.u.abs().max()) == 0


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="no ngspice command")
@pytest.mark.parametrize("phase", ["op", "wake"])
def test_exported_file_runs_in_plain_ngspice(tmp_path, capsys, phase):
    run = make_run_dir(tmp_path / "run")
    path = tmp_path / "net.cir"
    code, _, err = run_cli(["--netlist", path, "--phase", phase, "--t-end", 2, run], capsys)
    assert code == 0, err
    proc = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True,
                          timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert not re.search(r"^\s*error", log, re.I | re.M), log


def test_errors_are_one_sentence(monkeypatch):
    with pytest.raises(NgspiceError, match="rejected the netlist"):
        run_netlist("* bad\nX1 a b no_such_subcircuit\n.op\n.end\n", [])
    with pytest.raises(NgspiceError, match="failed to converge"):
        run_netlist("* no DC path\nI1 0 a DC 1\nC1 a 0 1p\n.op\n.end\n", ["a"])
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", "/nonexistent/libngspice.so")
    with pytest.raises(NgspiceError, match="sudo apt-get install -y ngspice libngspice0"):
        operating_point(one_neuron(), ControllerParams(), [0.0])
