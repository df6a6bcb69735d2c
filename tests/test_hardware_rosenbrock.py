"""The hardware emulation under the Rosenbrock-W solver: the realised circuit's Jacobian
(dfc_analog.model.hardware.HardwareJacobian) against finite differences, its (I − cA) solve,
and the trajectory against a tight Dormand–Prince solve, in float64 and float32."""
import dataclasses

import pytest
import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareJacobian, HardwareModel
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.dormand_prince import dormand_prince
from dfc_analog.solvers.rosenbrock import rosenbrock_w
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation import compare
from dfc_analog.validation.compare import ValidationSettings, emulation_trajectory

SIGNALS = ("soma", "basal", "apical", "rate", "u", "u_int", "error")


def mesh_spec():
    """pcm on a mesh whose row wires matter: 200 Ω column and 300 Ω row segments, 4 × 4 tiles."""
    pcm = load_spec("pcm")
    return dataclasses.replace(pcm, crossbar_size=4, synapse=dataclasses.replace(
        pcm.synapse, wire_resistance=200.0, row_wire_resistance=300.0))


def small_problem(sizes=(6, 4, 3), preset="pcm", params=ControllerParams(), B=2,
                  dtype=torch.float64):
    net = DFCNetwork(list(sizes), ["tanh"] * (len(sizes) - 2) + ["linear"],
                     dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                     feedback_init="weight_product")
    spec = mesh_spec() if preset == "mesh" else load_spec(preset)
    real = realise_network(net, spec, seed=0, v_scale=0.5)
    model = HardwareModel(real, params, dtype=dtype)
    x = torch.linspace(-0.8, 0.8, B * sizes[0], dtype=torch.float64).reshape(B, sizes[0])
    r_star = model.feedforward(x)["rate"][:, -sizes[-1]:] + 0.05
    return model, x, r_star


def off_equilibrium(model, x, clip: bool):
    """A state near the feed-forward one, every stage displaced; with ``clip`` some op-amp
    outputs (a soma, a row, the controller's summer) driven well beyond the rails."""
    y = model.feedforward(x)["state"].clone()
    gen = torch.Generator().manual_seed(3)
    y += 0.05 * torch.randn(y.shape, generator=gen, dtype=y.dtype) * y.abs().clamp(min=1e-3)
    if clip:
        N = model.N
        y[:, 0] = 2.0 * model.rail                 # soma 0 saturated
        y[:, 2 * N + 1] = -1.7 * model.rail        # row r of neuron 1
        y[:, -1] = 1.6 * model.rail                # the summer's u of the last output
    return y


@pytest.mark.parametrize("preset", ["pcm", "pcm-wires", "mesh"])
@pytest.mark.parametrize("wake", [True, False])
@pytest.mark.parametrize("params", [ControllerParams(), ControllerParams(k_p=0.0),
                                    ControllerParams(leak="total")])
@pytest.mark.parametrize("clip", [False, True])
def test_jacobian_against_central_differences(preset, wake, params, clip):
    """A w against (f(y + εw) − f(y − εw)) / 2ε in float64, in every stage (the op-amp pole
    states, the soma capacitors, the rows, the crossbars with wires, the controller's five
    op-amps), inside the rails and with clipped outputs."""
    model, x, r_star = small_problem(preset=preset, params=params)
    dyn = model.dynamics(x, r_star if wake else None)
    y = off_equilibrium(model, x, clip)
    jac = HardwareJacobian(dyn, y)
    for k in range(3):
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(10 + k),
                        dtype=y.dtype)
        eps = 1e-6
        fd = (dyn(0.0, y + eps * w) - dyn(0.0, y - eps * w)) / (2 * eps)
        Aw = jac.apply(w)
        assert float((Aw - fd).abs().max()) <= 1e-7 * float(fd.abs().max())


def test_jacobian_in_float32_against_float64():
    """The float32 model's Jacobian equals the float64 one to float32 rounding."""
    m64, x, r_star = small_problem()
    m32, _, _ = small_problem(dtype=torch.float32)
    y = off_equilibrium(m64, x, clip=True)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
    a64 = HardwareJacobian(m64.dynamics(x, r_star), y).apply(w)
    a32 = HardwareJacobian(m32.dynamics(x, r_star), y.float()).apply(w.float())
    assert a32.dtype == torch.float32
    assert float((a32.double() - a64).abs().max()) <= 1e-5 * float(a64.abs().max())


@pytest.mark.parametrize("dtype, bound", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
@pytest.mark.parametrize("wake", [True, False])
@pytest.mark.parametrize("c, preset", [(1e-3, "pcm"), (0.3, "pcm"), (30.0, "pcm"),
                                       (1e-3, "mesh"), (30.0, "mesh")])
def test_stiff_solve_inverts_I_minus_cA(dtype, bound, wake, c, preset):
    """solve(b, s) = w with w − cAw = s·b, from steps far below the op-amp poles to far
    beyond them (the Schur complement of the controller and the forward substitution; on a
    mesh the soma stages' coupled p solved per layer)."""
    model, x, r_star = small_problem(sizes=(5, 4, 4, 3), preset=preset, dtype=dtype)
    dyn = model.dynamics(x, r_star if wake else None)
    y = off_equilibrium(model, x.to(dtype), clip=True).to(dtype)
    jac = HardwareJacobian(dyn, y)
    b = torch.randn(y.shape, generator=torch.Generator().manual_seed(7),
                    dtype=torch.float64).to(dtype)
    out = torch.empty_like(b)
    w = dyn.stiff_part(y, c)(b, 2.0, out=out)
    assert w is out
    residual = w - c * jac.apply(w) - 2.0 * b
    assert float(residual.abs().max()) <= bound * float((w.abs() + c * jac.apply(w).abs()).max())


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_rosenbrock_trajectory_against_tight_dopri5(dtype, tol):
    """The wake phase of a pcm realisation of a 6-4-3 net by ROS34PW2 at rtol = atol = tol
    against dopri5 at 1e-9 (float64): every signal within 30·tol·(1 + peak), the bound the
    solver's own tests hold (tests/test_rosenbrock.py)."""
    T = 2.0
    times = torch.linspace(0.0, T, 21, dtype=torch.float64)
    model, x, r_star = small_problem()
    reference = simulate_hardware_wake(model, x, r_star, T, times, 1e-9, 1e-9)
    model_d, _, _ = small_problem(dtype=dtype)
    ros = simulate_hardware_wake(model_d, x, r_star, T, times.to(dtype), tol, tol,
                                 method="rosenbrock")
    assert ros.u.dtype == dtype
    for name in SIGNALS:
        a, b = getattr(reference, name), getattr(ros, name)
        for ref, got in (zip(a, b) if isinstance(a, list) else [(a, b)]):
            peak = float(ref.abs().max())
            assert float((got.double() - ref).abs().max()) <= 30 * tol * (1 + peak), name


def test_rosenbrock_steps_follow_accuracy_not_the_op_amp_poles():
    """At rtol = atol = 1e-4 dopri5's step is bound by the op-amps' closed-loop poles
    (~0.01 τ_u on pcm, 20 MHz), the Rosenbrock step by accuracy: a fraction of the steps."""
    model, x, r_star = small_problem(B=1)
    dyn = model.dynamics(x, r_star)
    y0 = model.feedforward(x)["state"]
    counts = {}
    for name in ("dopri5", "rosenbrock"):
        steps = []
        if name == "dopri5":
            dormand_prince(dyn, y0, [0.0, 5.0], 1e-4, 1e-4, 10 ** 6, lambda *s: steps.append(1))
        else:
            rosenbrock_w(dyn, dyn.stiff_part, y0, [0.0, 5.0], 1e-4, 1e-4, 10 ** 6,
                         lambda *s: steps.append(1))
        counts[name] = len(steps)
    assert counts["rosenbrock"] * 5 < counts["dopri5"], counts


def test_rosenbrock_refuses_the_read_noise_process_and_unknown_solvers():
    net = DFCNetwork([4, 3, 2], ["tanh", "linear"], dtype=torch.float64,
                     generator=torch.Generator().manual_seed(0))
    real = realise_network(net, load_spec("pcm-noise"), seed=0, v_scale=0.5)
    model = HardwareModel(real, ControllerParams())
    x = torch.zeros(1, 4, dtype=torch.float64)
    path = model.read_noise_path([0], [0], 1.0)
    times = torch.linspace(0, 1.0, 3, dtype=torch.float64)
    with pytest.raises(ConfigError, match="rosenbrock solver cannot integrate the read-noise") \
            as info:
        simulate_hardware_wake(model, x, None, 1.0, times, noise=path, method="rosenbrock")
    assert str(info.value).count(". ") == 0
    with pytest.raises(ConfigError, match="has no solver 'euler'"):
        simulate_hardware_wake(model, x, None, 1.0, times, method="euler")
    with pytest.raises(ConfigError, match="unknown emulation solver 'euler'"):
        ValidationSettings(emulation_solver="euler").check()


def test_validation_emulation_falls_back_to_rosenbrock_when_stiff(monkeypatch):
    """'auto': dopri5 beyond its step budget hands the emulation to rosenbrock (one note),
    which agrees with the dopri5 solve at the validation's tolerance."""
    model, x, r_star = small_problem(B=1)
    times = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    tol = 1e-6
    direct, solver = emulation_trajectory(model, x[0], r_star[0], 1.0, times, tol)
    assert solver == "dopri5"
    monkeypatch.setattr(compare, "REFERENCE_EXPLICIT_STEPS", 20)
    notes = []
    stiff, solver = emulation_trajectory(model, x[0], r_star[0], 1.0, times, tol,
                                         note=notes.append)
    assert solver == "rosenbrock" and len(notes) == 1 and "rosenbrock" in notes[0]
    for a, b in zip(direct.rate, stiff.rate):
        assert float((a - b).abs().max()) <= 30 * tol * (1 + float(a.abs().max()))
