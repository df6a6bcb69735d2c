"""The controller of eq. (4) on op-amps (dfc_analog.model.hardware.OpAmpController and the
netlist's dfc_controller_hw): alone, on a constant error, against the closed form of its stages
with finite A₀ (the integrator leaks 1/(A₀ + 1) more than α), in the emulation (its linear
equations solved exactly) and in ngspice; at rest its offsets give u_rest in closed form."""
import re

import numpy as np
import pytest
import torch

from dfc_analog.circuit.crossbar import CONTROLLER_RISE, write_crossbar_netlist
from dfc_analog.circuit.simulate import run_netlist
from dfc_analog.hardware import HardwareSpec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel

from tests.test_hardware_circuit import one_column
from tests.test_validate import needs_ngspice

A0, ALPHA, K_P = 100.0, 0.1, 1.5
PARAMS = ControllerParams(alpha=ALPHA, k_p=K_P)
# a fast pole (τ_p = A₀ / 2π gbw = 1.6e-4 τ_u) leaves the static finite-gain closed form
SPEC = HardwareSpec.from_dict({"amplifier": {"gain": A0, "gbw": 1e11, "rail": 10.0}})
R_STAR, R_L = 0.3, 0.1


def closed_form(t: np.ndarray, leak: str = "integral") -> dict:
    """Each stage with finite A₀ and no offset, the error constant from t = 0: difference
    amplifier e = (r* − r_L) / (1 + 2/A₀); inverting integrator (V₋ = −o/A₀, KCL at V₋ with the
    leak α) o_I = −e A₀/(A₀+1) (1 − exp(−λt)) / λ, λ = α + 1/(A₀ + 1); proportional stage
    o_P = −k_p e / (1 + (1 + k_p)/A₀); summer u = −(o_I + o_P) / (1 + 3/A₀)."""
    e = (R_STAR - R_L) / (1 + 2 / A0)
    lam = ALPHA + 1 / (A0 + 1)
    o_I = -e * A0 / (A0 + 1) * (1 - np.exp(-lam * t)) / lam
    o_P = -K_P * e / (1 + (1 + K_P) / A0)
    return {"error": np.full_like(t, e), "u_int": -o_I, "u": -(o_I + o_P) / (1 + 3 / A0)}


def test_emulated_controller_on_a_constant_error_against_the_closed_form():
    """The controller's equations with r_L held: linear, so exactly c(t) = e^{Mt} c(0) +
    ∫ e^{Ms} ds b (one matrix exponential of the augmented system)."""
    model = HardwareModel(realise_network(one_column(), SPEC, seed=0), PARAMS)
    ctl, n = model.ctl, 1
    r_L, r_star = torch.tensor([[R_L]], dtype=torch.float64), torch.tensor([[R_STAR]],
                                                                          dtype=torch.float64)
    c0 = ctl.rest(1)
    ctl.error_rest(c0, r_L)

    def f(c):
        return ctl.rates(ctl.signals(c[None], r_L, r_star))[0]

    M = torch.autograd.functional.jacobian(f, c0[0])
    b = f(torch.zeros(5 * n, dtype=torch.float64))
    aug = torch.zeros(5 * n + 1, 5 * n + 1, dtype=torch.float64)
    aug[:5 * n, :5 * n], aug[:5 * n, -1] = M, b
    t = np.linspace(0.05, 3.0, 60)
    start = torch.cat([c0[0], torch.ones(1, dtype=torch.float64)])
    states = torch.stack([torch.linalg.matrix_exp(aug * float(s)) @ start for s in t])[:, :5 * n]
    assert torch.allclose(f(c0[0] + 1e-3) - f(c0[0]), M @ torch.full((5 * n,), 1e-3,
                                                                     dtype=torch.float64))
    s = ctl.signals(states, r_L.expand(len(t), 1), r_star.expand(len(t), 1))
    want = closed_form(t)
    for name in ("error", "u_int", "u"):
        got = s[name][:, 0].numpy()
        assert np.abs(got - want[name]).max() <= 1e-5 * np.abs(want[name]).max(), name
    ideal = (R_STAR - R_L) * (1 - np.exp(-ALPHA * t[-1])) / ALPHA      # A₀ = ∞
    assert abs(want["u_int"][-1] - ideal) > 1e-3 * ideal                 # the extra leak shows


def test_controller_at_rest_gives_the_offsets_u_rest():
    """Reset closed, e = 0: the proportional stage o_P = A₀ V_P / (1 + A₀/(1 + k_p)), the
    integrator as a follower through the reset, the summer u = A₀ (V_S − (o_I + o_P)/3) /
    (1 + A₀/3), as an independent nodal solve of the three stages."""
    spec = HardwareSpec.from_dict({"amplifier": {"gain": A0, "gbw": 1e7, "offset": 3e-3,
                                                 "rail": 1.4}})
    real = realise_network(one_column(), spec, seed=3, v_scale=0.5)
    model = HardwareModel(real, PARAMS)
    V = real.controller_offset[:, 0].numpy()            # E, I, P, S, volts
    rho, G = model.ctl.RESET, 1.0
    # unknowns [o_I, p, o_P, u] (V): integrator KCL at p and its op-amp, the P and S op-amps
    K = np.array([[ALPHA + rho, -(1 + ALPHA + rho), 0, 0],
                  [1, A0, 0, 0],
                  [0, 0, 1 + A0 / (1 + K_P), 0],
                  [A0 / 3, 0, A0 / 3, 1 + A0 / 3]]) * G
    o_I, p, o_P, u = np.linalg.solve(K, [0, A0 * V[1], A0 * V[2], A0 * V[3]])
    rest = model.ctl.rest(1)[0].numpy() * real.v_scale
    assert rest[1:] == pytest.approx([o_I, p, o_P, u], rel=1e-12)
    assert abs(u) > 1e-4                                  # the offsets show at the output


@needs_ngspice
def test_circuit_controller_on_a_constant_error_against_the_closed_form():
    """The netlist's dfc_controller_hw alone in ngspice (tight tolerance), the target and the
    output rate as DC sources, the switch on at t_on."""
    vs, ts, t_on = 0.5, 1e-6, 1e-6
    real = realise_network(one_column(), SPEC, seed=0, v_scale=vs)
    text = write_crossbar_netlist(real, PARAMS, [0.1, 0.2], phase="op")
    subckts = re.findall(r"^\.subckt (?:dfc_opamp|dfc_controller_hw).*?^\.ends$", text,
                         re.M | re.S)
    t = np.linspace(0.05, 3.0, 60)
    deck = "\n".join(["* controller alone", *subckts, "Vddc vddc 0 DC 1.5",
                      "Vssc vssc 0 DC -1.5", f"Vt target 0 DC {R_STAR * vs!r}",
                      f"Vr rate 0 DC {R_L * vs!r}",
                      f"Ve enable 0 PWL(0 0 {t_on - CONTROLLER_RISE * ts!r} 0 {t_on!r} 1)",
                      "Xc target rate enable error integ prop u vddc vssc dfc_controller_hw",
                      ".options reltol=1e-7 abstol=1e-14 vntol=1e-9",
                      f".tran 1e-9 {t_on + 3.0 * ts!r} 0 1e-8", ".end", ""])
    data = run_netlist(deck, ["error", "integ", "u"])
    got = {name: np.interp(t_on + t * ts, data["time"], data[node]) / vs
           for name, node in (("error", "error"), ("u", "u"))}
    got["u_int"] = -np.interp(t_on + t * ts, data["time"], data["integ"]) / vs
    want = closed_form(t)
    for name in ("error", "u_int", "u"):
        assert np.abs(got[name] - want[name]).max() <= 1e-4 * np.abs(want[name]).max(), name
