"""Read noise as a process (SynapseSpec.read_interval > 0): in the realisation, the emulation
(dfc_analog.model.hardware) and the crossbar netlist (dfc_analog.circuit.crossbar).

Closed forms: the per-column source σ_col = sqrt(Σ_j σ_j² V_j²) against the per-device sum
(explicitly, in the netlist's own expression and in distribution); a single column driven by
piecewise-linear white samples against its exact discretisation (a matrix exponential of the
column's linear equations: path for path, and its variance); the F quantiles against scipy. The
circuit with the emulation's noise path (PWL) agrees sample for sample; with its own TRNOISE it
agrees in distribution. With read_interval = 0 nothing changes.
"""
import copy
import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dfc_analog.circuit import crossbar
from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.circuit.simulate import simulate_hardware_circuit
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, realise_network
from dfc_analog.hardware.devices import pcm_read_sigma
from dfc_analog.hardware.wires import wired_layers
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel, ReadNoisePath
from dfc_analog.model.network import DFCNetwork
from dfc_analog.solvers.wake import simulate_hardware_wake
from dfc_analog.validation.compare import (SampleSet, ValidationSettings, check_read_noise,
                                           f_quantile, spice_hardware_circuit)

from tests.test_validate import needs_ngspice, run_dir  # noqa: F401 (fixture)

AMP = {"gain": 1e4, "gbw": 20e6, "offset": 1e-3, "rail": 1.4}


def spec_with(read_interval=250e-9, amplifier=AMP, **synapse):
    base = {"device": "generic", "g_min": 0.0, "g_max": 25e-6, "read_noise": 0.05,
            "read_interval": read_interval}
    return HardwareSpec.from_dict({"synapse": {**base, **synapse}, "amplifier": amplifier})


def small_net(sizes=(6, 4, 3), seed=0):
    acts = ["tanh"] * (len(sizes) - 2) + ["linear"]
    return DFCNetwork(list(sizes), acts, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(seed),
                      feedback_init="weight_product")


@pytest.mark.parametrize("value, words", [(-1e-9, "read_interval must be a non-negative"),
                                          (math.nan, "read_interval must be a non-negative"),
                                          (math.inf, "read_interval must be a non-negative")])
def test_bad_read_interval_is_one_sentence(value, words):
    with pytest.raises(ConfigError, match=words) as info:
        spec_with(read_interval=value)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_pcm_process_needs_a_drift_time_beyond_the_read_interval():
    with pytest.raises(ConfigError, match="drift_time .* must exceed read_interval"):
        HardwareSpec.from_dict({"synapse": {"device": "pcm", "read_noise": 1.0,
                                            "drift_time": 1e-7, "read_interval": 250e-9}})


def test_pcm_noise_preset_sigma_is_the_published_per_read_sigma():
    """σ_read of the process = |G| Q_s √ln((t_d + t_s) / 2 t_s) at t_s = read_interval, and the
    process draws nothing: the devices are those of pcm without read noise."""
    net = small_net()
    spec = load_spec("pcm-noise")
    assert spec.synapse.read_interval == 250e-9 and spec.synapse.read_process
    real = realise_network(net, spec, seed=3)
    quiet = dataclasses.replace(spec, synapse=dataclasses.replace(spec.synapse, read_noise=0.0))
    plain = realise_network(net, quiet, seed=3)
    for lr, lp in zip(real.layers, plain.layers):
        assert torch.equal(lr.G_pos, lp.G_pos) and torch.equal(lr.act_offset, lp.act_offset)
        assert lp.read_sigma is None
        expected = pcm_read_sigma(lr.G_pos, 25e-6, 3600.0, 250e-9)
        assert torch.allclose(lr.read_sigma[0], expected, rtol=1e-15, atol=0)
    assert real.read_interval == 250e-9 and real.without_read_process().read_interval is None


def test_read_interval_zero_changes_nothing():
    """read_interval = 0 is today's static draw: identical devices, netlist and emulation."""
    net = small_net()
    pcm = load_spec("pcm")
    zero = dataclasses.replace(pcm, synapse=dataclasses.replace(pcm.synapse, read_interval=0.0))
    a, b = realise_network(net, pcm, seed=5), realise_network(net, zero, seed=5)
    for la, lb in zip(a.layers, b.layers):
        assert torch.equal(la.G_pos, lb.G_pos) and torch.equal(la.GQ_neg, lb.GQ_neg)
        assert la.read_sigma is None and lb.read_sigma is None
    x = np.linspace(-0.5, 0.5, 6)
    params = ControllerParams()
    r_star = np.full(3, 0.1)
    assert write_crossbar_netlist(a, params, x, r_star) == \
        write_crossbar_netlist(b, params, x, r_star)
    assert "Brn" not in write_crossbar_netlist(a, params, x, r_star)
    assert HardwareModel(b, params).read_interval is None


def _per_device_sigma(real, x, r_pos, r_neg, u, layer, k):
    """σ_col of column k of ``layer`` (model units) as the explicit sum over its devices."""
    lr = real.layers[layer]
    sp, sn, sbp, sbn, sqp, sqn = lr.read_sigma
    R = float(lr.R_f[k])
    rows = slice(sum(real.layer_sizes[1:layer]), sum(real.layer_sizes[1:layer + 1]))
    below_pos = x if layer == 0 else r_pos[rows]
    below_neg = -x if layer == 0 else r_neg[rows]
    total = 0.0
    for j in range(real.layer_sizes[layer]):
        total += (R * float(sp[k, j])) ** 2 * float(below_neg[j]) ** 2
        total += (R * float(sn[k, j])) ** 2 * float(below_pos[j]) ** 2
    total += (R * float(sbp[k])) ** 2 + (R * float(sbn[k])) ** 2
    for m in range(len(u)):
        total += ((R * float(sqp[k, m])) ** 2 + (R * float(sqn[k, m])) ** 2) * float(u[m]) ** 2
    return math.sqrt(total)


def _column_sigma_checks(real, model, reference) -> tuple:
    """At a random state (x, the rows r and −r, u; seed 0): the emulation's σ_col of three
    columns equals the per-device sum over ``reference``'s σ (1e-12), and so does the netlist's
    B-source of layer 2 column 2 at those node voltages. Returns (the generator, x, u, σ_col)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, generator=gen, dtype=torch.float64) - 0.5
    r_pos = torch.rand(7, generator=gen, dtype=torch.float64) - 0.5
    r_neg = -r_pos + 0.01 * torch.randn(7, generator=gen, dtype=torch.float64)
    u = torch.randn(3, generator=gen, dtype=torch.float64)
    sigma = model.read_sigma_columns(x, r_pos[None], r_neg[None], u[None])[0]
    for layer, k, col in [(0, 0, 0), (0, 3, 3), (1, 2, 6)]:
        expected = _per_device_sigma(reference, x, r_pos, r_neg, u, layer, k)
        assert float(sigma[col]) == pytest.approx(expected, rel=1e-12)
    vs = 0.5
    text = write_crossbar_netlist(real, ControllerParams(), x.numpy(), np.zeros(3))
    line = next(l for l in re.sub(r"\n\+ ", " ", text).splitlines() if l.startswith("Brn2_2 "))
    voltages = {f"l1_rate_{j}": float(r_pos[j]) * vs for j in range(4)}
    voltages.update({f"l1_raten_{j}": float(r_neg[j]) * vs for j in range(4)})
    voltages.update({f"ctl_u_{m}": float(u[m]) * vs for m in range(3)})
    voltages["l2_rn_2"] = 1.0
    expr = re.sub(r"V\(([\w]+)\)", lambda m: repr(voltages[m.group(1)]),
                  line.split("I = ", 1)[1])
    current = eval(expr, {"sqrt": math.sqrt})             # noqa: S307 (numbers only)
    assert current * float(real.layers[1].R_f[2]) / vs == pytest.approx(float(sigma[6]),
                                                                        rel=1e-12)
    return gen, x, u, sigma


def test_column_sigma_is_the_per_device_sum():
    """σ_col² = Σ_j σ_j² V_j²: the emulation's column term, the netlist's B-source expression and
    a Monte Carlo of independent per-device fluctuations all give the per-device sum."""
    real = realise_network(small_net(), spec_with(g_min=1e-6), seed=2, v_scale=0.5)
    gen, x, u, sigma = _column_sigma_checks(real, HardwareModel(real, ControllerParams()), real)
    # in distribution: Σ_j σ_j ξ_j V_j with independent ξ_j has variance σ_col²
    lr = real.layers[0]
    sp, sn, sbp, sbn, sqp, sqn = lr.read_sigma
    R = float(lr.R_f[1])
    terms = torch.cat([R * sp[1] * -x, R * sn[1] * x, R * sbp[1:2], R * sbn[1:2],
                       R * sqp[1] * u, R * sqn[1] * u])
    draws = torch.randn(40000, terms.numel(), generator=gen, dtype=torch.float64) @ terms
    rel = float(draws.var()) / float(sigma[1]) ** 2 - 1.0
    assert abs(rel) < 5 * math.sqrt(2 / 40000)


def wired_noise(R_w: float, R_row: float, tile: int = 2, base: str | None = None) -> HardwareSpec:
    """A read-noise spec (``spec_with``'s, or the preset ``base``) with wire resistance on
    tiles of ``tile`` rows and columns."""
    spec = load_spec(base) if base else spec_with(g_min=1e-6)
    return dataclasses.replace(spec, crossbar_size=tile, synapse=dataclasses.replace(
        spec.synapse, wire_resistance=R_w, row_wire_resistance=R_row))


@pytest.mark.parametrize("R_w, R_row", [(0.0, 0.0), (3e3, 0.0), (3e3, 2e3)])
def test_column_sigma_through_the_wires_is_sigma_h(R_w, R_row):
    """With wire resistance each device's σ reaches its column's sense end as σ h
    (:mod:`dfc_analog.hardware.wires`): the emulation's σ_col and the netlist's B-source are
    the per-device sum over σ_j h_j (one helper, ``wired_layers``); on column ladders h = T / g
    exactly (both from one solve), on a mesh h differs from T / g by what the row wire hands
    between the cell and the other columns (≤ 5 % here). Without wire
    resistance the σ are the realisation's own tensors: today's model, bit for bit."""
    net = small_net()
    real = realise_network(net, wired_noise(R_w, R_row), seed=2, v_scale=0.5)
    wired = wired_layers(real)
    through = dataclasses.replace(real, layers=[w.layer for w in wired])
    model = HardwareModel(real, ControllerParams())
    if R_w == 0 and R_row == 0:
        assert all(w.layer.read_sigma is l.read_sigma for w, l in zip(wired, real.layers))
        R2 = real.layers[0].R_f[:, None] ** 2
        assert torch.equal(model.read_pos[0], R2 * real.layers[0].read_sigma[0] ** 2)
    else:
        for w, l in zip(wired, real.layers):
            pairs = zip(w.layer.read_sigma, l.read_sigma, (w.layer.G_pos, w.layer.G_neg,
                        w.layer.Gb_pos, w.layer.Gb_neg, w.layer.GQ_pos, w.layer.GQ_neg),
                        (l.G_pos, l.G_neg, l.Gb_pos, l.Gb_neg, l.GQ_pos, l.GQ_neg))
            for sigma_h, sigma, T, G in pairs:
                h, ratio = sigma_h / sigma, T / G
                assert float(h.max()) < 1
                if R_row == 0:
                    assert torch.allclose(h, ratio, rtol=1e-13, atol=0)
                else:
                    assert float((h / ratio - 1).abs().max()) < 0.05
            assert float((w.layer.read_sigma[0] / l.read_sigma[0]).min()) < 0.85
    _column_sigma_checks(real, model, through)


def test_same_seed_same_path_other_seed_differs_global_rng_untouched():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    path = ReadNoisePath.draw([4, 4, 5, 4], [0, 0, 0, 1], n=6, dt=0.25, t_end=3.0)
    assert torch.equal(torch.rand(3), expected)          # no draw from the global generator
    xi = path.xi
    assert xi.shape == (14, 4, 6) and float(xi[0].abs().max()) == 0.0     # starts at rest
    assert torch.equal(xi[:, 0], xi[:, 1])
    assert not torch.equal(xi[:, 0], xi[:, 2]) and not torch.equal(xi[:, 0], xi[:, 3])
    again = ReadNoisePath.draw([4], [1], n=6, dt=0.25, t_end=3.0)
    assert torch.equal(again.xi[:, 0], xi[:, 3])          # a path depends on (seed, sample) only
    assert torch.allclose(path(0.625), 0.5 * xi[2] + 0.5 * xi[3], rtol=0, atol=1e-15)
    assert path.breakpoints(1.0) == [0.25, 0.5, 0.75, 1.0]
    assert path.breakpoints(0.6) == [0.25, 0.5, 0.75]


def test_dopri5_breakpoints_integrate_a_piecewise_linear_forcing_exactly():
    """y' = ξ(t), ξ piecewise linear: with the kinks as breakpoints every step integrates a
    polynomial of degree 1, which Dormand–Prince does exactly (the trapezoid sums), at any
    tolerance and also at outputs that fall on a kink; without breakpoints the same call is
    today's solver."""
    from dfc_analog.solvers.dormand_prince import dormand_prince
    path = ReadNoisePath.draw([1, 2], [0, 0], n=3, dt=0.3, t_end=3.0)
    exact = torch.cat([torch.zeros(1, 2, 3), torch.cumsum(0.15 * (path.xi[1:] + path.xi[:-1]),
                                                           dim=0)])
    times = [0.3 * k for k in range(11)]
    y = dormand_prince(lambda t, y: path(t), torch.zeros(2, 3, dtype=torch.float64), times,
                       1e-3, 1e-3, 10_000, breakpoints=path.breakpoints(3.0))
    assert torch.allclose(y, exact[:11], rtol=0, atol=1e-13)
    plain = dormand_prince(lambda t, y: -y, torch.ones(2, dtype=torch.float64), [0.0, 1.0],
                           1e-8, 1e-8, 10_000)
    again = dormand_prince(lambda t, y: -y, torch.ones(2, dtype=torch.float64), [0.0, 1.0],
                           1e-8, 1e-8, 10_000, breakpoints=())
    assert torch.equal(plain, again)


def _column_discretisation(real, params, time_scale, dt):
    """The soma stage of a single-layer column as dδ/dt = A δ + c σ_col ξ(t) for the departure
    δ = (n_soma, p) − equilibrium (the module docstring's op-amp and R_f ‖ C_f equations), and
    its exact one-step maps for piecewise-linear ξ: δ_{k+1} = Φ δ_k + Γ₀ ξ_k + Γ₁ ξ_{k+1}."""
    from scipy.linalg import expm
    amp, lr = real.spec.amplifier, real.layers[0]
    A0, tau_p, tau_v = amp.gain, amp.pole_time / time_scale, params.tau_v
    n_g = float(lr.noise_gain[0])
    A = np.array([[-1 / tau_p, -A0 / tau_p],
                  [-1 / tau_p + 1 / tau_v, -A0 / tau_p - n_g / tau_v]])
    c = np.array([0.0, 1.0 / tau_v])       # dp/dt gains +J/τ_v: J enters −dv_c
    # augmented [δ, a, b] over one step: δ' = A δ + c a, a' = b / dt, b' = 0, from a = ξ_k and
    # b = ξ_{k+1} − ξ_k, so that a(s) is the forcing ξ_k + (ξ_{k+1} − ξ_k) s / dt
    M = np.zeros((4, 4))
    M[:2, :2], M[:2, 2], M[2, 3] = A, c, 1.0 / dt
    E = expm(M * dt)
    Phi, g_const, g_ramp = E[:2, :2], E[:2, 2], E[:2, 3]
    return Phi, g_const - g_ramp, g_ramp


def test_column_against_its_exact_discretisation():
    """A 3-1 linear column with the read-noise process, controller off: the emulation's soma
    path equals the exact discretisation of its linear equations driven by the same ξ (path for
    path), and its variance over 1000 paths the closed form of that recursion. A slow op-amp
    (A₀ = 100, 10 MHz) keeps the solve short; the equations are the same."""
    net = DFCNetwork([3, 1], ["linear"], dtype=torch.float64,
                     generator=torch.Generator().manual_seed(4))
    spec = spec_with(read_interval=100e-9, g_min=1e-6, read_noise=0.2,
                     amplifier={"gain": 100.0, "gbw": 1e7, "offset": 1e-3, "rail": 1.4})
    real = realise_network(net, spec, seed=1, v_scale=0.5)
    params, ts = ControllerParams(), 1e-6
    model = HardwareModel(real, params, ts)
    dt, K, B = 0.1, 20, 1000
    x = torch.tensor([[0.4, -0.7, 0.2]], dtype=torch.float64)
    u_rest = model.ctl.rest(1)[0, -1:]      # the op-amp controller at rest: its offsets' u
    sigma_col = _per_device_sigma(real, x[0], None, None, u_rest, 0, 0)
    path = model.read_noise_path(list(range(B)), [0] * B, K * dt)
    times = torch.linspace(0, K * dt, K + 1, dtype=torch.float64)
    traj = simulate_hardware_wake(model, x.expand(B, 3), None, K * dt, times, rtol=1e-7,
                                  atol=1e-9, noise=path)
    soma = (traj.soma[0][:, :, 0] - model.feedforward(x)["soma"][0, 0]).numpy()   # (T, B)
    Phi, G0, G1 = _column_discretisation(real, params, ts, dt)
    xi = path.xi[:, :, 0].numpy() * sigma_col                                          # (K+1, B)
    delta = np.zeros((2, B))
    exact = [delta[0].copy()]
    for k in range(K):
        delta = Phi @ delta + np.outer(G0, xi[k]) + np.outer(G1, xi[k + 1])
        exact.append(delta[0].copy())
    exact = np.stack(exact)
    scale = exact.std()
    assert scale > 0
    assert np.abs(soma - exact).max() < 1e-5 * scale
    # the variance at t = K dt: w_k = δ_k − Γ₁ ξ_k obeys w_{k+1} = Φ w_k + (Φ Γ₁ + Γ₀) ξ_k and
    # is independent of ξ_k; w_0 = 0 and ξ_0 = 0, the other ξ_k unit (times σ_col)
    cov_w = np.zeros((2, 2))                      # Cov(w_1) = 0
    h = Phi @ G1 + G0
    for _ in range(1, K):
        cov_w = Phi @ cov_w @ Phi.T + np.outer(h, h)
    variance = (cov_w + np.outer(G1, G1))[0, 0] * sigma_col ** 2
    sample = float(np.var(soma[-1], ddof=1))
    assert abs(sample / variance - 1) < 5 * math.sqrt(2 / (B - 1))


def test_f_quantiles_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for q, d1, d2 in [(0.005, 7, 7), (0.995, 7, 7), (0.025, 3, 11), (0.9, 20, 5)]:
        assert f_quantile(q, d1, d2) == pytest.approx(float(stats.f.ppf(q, d1, d2)), rel=1e-9)


def _wake_on_the_emulations_path(real) -> tuple:
    """A 2 τ_u wake phase of ``real`` (the small net, its eq. 3 target 0.05 above the output)
    in the emulation on its own read-noise path (sample 7, seed 0) and in the crossbar netlist
    driven by that path (PWL): (emulation, circuit, the run's settings)."""
    params = ControllerParams()
    model = HardwareModel(real, params)
    x = torch.linspace(-0.8, 0.8, 6, dtype=torch.float64)[None]
    r_star = model.feedforward(x)["rate"][:, -3:] + 0.05
    T = 2.0
    times = torch.linspace(0, T, 81, dtype=torch.float64)
    path = model.read_noise_path([7], [0], T)
    emul = simulate_hardware_wake(model, x, r_star, T, times, 1e-9, 1e-9, noise=path)
    circ = simulate_hardware_circuit(real, params, x[0], r_star[0], T, times,
                                     read_noise=path.xi[:, 0])
    run = SimpleNamespace(params=params, x=x, r_star=r_star, T=T, times=times, path=path)
    return emul, circ, run


@needs_ngspice
def test_circuit_with_the_emulations_path_agrees_sample_for_sample():
    """The crossbar netlist driven by the emulation's own ξ (PWL sources, one per column) and
    the emulation agree on every signal to the simulator's tolerance, noise included."""
    real = realise_network(small_net(), load_spec("pcm-noise"), seed=0, v_scale=0.5)
    emul, circ, run = _wake_on_the_emulations_path(real)
    quiet = simulate_hardware_wake(HardwareModel(real.without_read_process(), run.params),
                                   run.x, run.r_star, run.T, run.times, 1e-9, 1e-9)
    for name in ("soma", "rate"):
        for a, b, q in zip(getattr(emul, name), getattr(circ, name), getattr(quiet, name)):
            signal_range = float(a.max() - a.min())
            assert float((a - b).abs().max()) < 1e-3 * signal_range
            assert float((a - q).abs().max()) > 1e-2 * signal_range      # the noise shows


@needs_ngspice
def test_read_noise_through_a_mesh_circuit_agrees_and_the_whole_sigma_fails(monkeypatch):
    """pcm-noise on 2 × 2 tiles with 3 kΩ column and row segments (each tile a mesh; the
    devices' noise reaches the sense ends at 77-100 % of its σ): the crossbar netlist driven by
    the emulation's own ξ (PWL) agrees with the emulation sample for sample, as without wires;
    the same netlist with each device's whole σ (the wires ignored: h = 1) misses it."""
    real = realise_network(small_net(), wired_noise(3e3, 3e3, base="pcm-noise"), seed=0,
                           v_scale=0.5)
    emul, circ, run = _wake_on_the_emulations_path(real)

    def whole_sigma(real, count=None):
        return [dataclasses.replace(w, layer=dataclasses.replace(w.layer, read_sigma=l.read_sigma))
                for w, l in zip(wired_layers(real, count), real.layers)]

    monkeypatch.setattr(crossbar, "wired_layers", whole_sigma)
    whole = simulate_hardware_circuit(real, run.params, run.x[0], run.r_star[0], run.T,
                                      run.times, read_noise=run.path.xi[:, 0])
    worst = 0.0
    for name in ("soma", "rate"):
        for a, b, c in zip(getattr(emul, name), getattr(circ, name), getattr(whole, name)):
            signal_range = float(a.max() - a.min())
            assert float((a - b).abs().max()) < 1e-3 * signal_range
            worst = max(worst, float((a - c).abs().max()) / signal_range)
    assert worst > 3e-3


def _noise_samples(net, real, sizes, M=1):
    params = ControllerParams()
    model = HardwareModel(real, params)
    x = torch.linspace(-0.8, 0.8, sizes[0] * M, dtype=torch.float64).reshape(M, sizes[0])
    r_star = model.feedforward(x)["rate"][:, -sizes[-1]:] + 0.05
    return SampleSet("(test)", list(sizes), net, params, x, r_star, 1.0, False)


@needs_ngspice
@pytest.mark.parametrize("circuit_noise", ["pwl", pytest.param("trnoise",
                                                               marks=pytest.mark.slow)])
def test_circuit_and_emulation_variance_agree_fast(circuit_noise):
    """8 noise seeds of the circuit (PWL from the stream circuit_read_noise, or TRNOISE)
    against 8 of the emulation, a 4-3-2 net on pcm-noise: the variances over seeds of r_L(T)
    and of the eq. (5) update agree within the 99 % F(7, 7) bounds; with PWL the circuit on
    the emulation's own path agrees sample for sample."""
    net = small_net((4, 3, 2))
    settings = ValidationSettings(hardware="pcm-noise", points=41, noise_seeds=8,
                                  circuit_noise=circuit_noise)
    settings.check()
    real = settings.realise(net)
    checks = check_read_noise(_noise_samples(net, real, (4, 3, 2)), settings, workers=1)
    (c,) = checks
    assert c.bounds == pytest.approx((f_quantile(0.005, 7, 7), f_quantile(0.995, 7, 7)))
    assert set(c.circuit) == {"output", "update"}
    assert all(v > 0 for v in c.circuit.values()) and all(v > 0 for v in c.emulation.values())
    assert c.variance_passed, (c.circuit, c.emulation)
    if circuit_noise == "pwl":
        assert c.same_path.passed, c.same_path.failures
        assert c.same_path.max_error <= 1e-3
    else:
        assert c.same_path is None
    assert c.passed


def _scaled_read_noise(factor):
    """The hardware circuit with every device's read-noise σ scaled by ``factor``."""
    def simulate(real, *args, **kwargs):
        real = copy.deepcopy(real)
        for lr in real.layers:
            lr.read_sigma = tuple(factor * s for s in lr.read_sigma)
        return spice_hardware_circuit(real, *args, **kwargs)
    return simulate


@needs_ngspice
@pytest.mark.parametrize("mesh", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_pwl_noise_check_is_reproducible_and_a_scaled_noise_amplitude_fails(mesh, tmp_path):
    """With PWL read noise two runs of the check give identical numbers; a circuit whose read
    noise is 20 % stronger passes in distribution with 2 seeds (the F test cannot see it) but
    fails on the emulation's own path, naming the signal. The same on pcm-noise with 3 kΩ
    column and row segments on 2 × 2 tiles (``mesh``: every tile a mesh, σ h per device)."""
    net = small_net((4, 3, 2))
    hardware = "pcm-noise"
    if mesh:
        hardware = tmp_path / "pcm-noise-mesh.toml"
        hardware.write_text('extends = "pcm-noise"\ncrossbar_size = 2\n[synapse]\n'
                            'wire_resistance = 3000.0\nrow_wire_resistance = 3000.0\n')
    settings = ValidationSettings(hardware=str(hardware), points=41, noise_seeds=2)
    samples = _noise_samples(net, settings.realise(net), (4, 3, 2))
    first, again = (check_read_noise(samples, settings, workers=1)[0] for _ in range(2))
    assert first.circuit == again.circuit and first.emulation == again.emulation
    assert first.same_path.max_error == again.same_path.max_error and first.passed
    (bad,) = check_read_noise(samples, settings, workers=1, circuit=_scaled_read_noise(1.2))
    assert bad.variance_passed and not bad.same_path.passed and not bad.passed
    assert any("max error" in line for line in bad.same_path.failures)
    assert bad.same_path.max_error > 10 * first.same_path.max_error


def test_bad_noise_settings_are_one_sentence():
    for kwargs, words in [({"noise_seeds": 1}, "noise_seeds must be a whole number ≥ 2"),
                          ({"noise_samples": 0}, "noise_samples must be a whole number ≥ 1"),
                          ({"noise_confidence": 1.0}, "noise_confidence must lie strictly"),
                          ({"circuit_noise": "white"}, "unknown circuit noise 'white'")]:
        with pytest.raises(ConfigError, match=words):
            ValidationSettings(**kwargs).check()


@pytest.mark.slow
@needs_ngspice
def test_toy_run_on_pcm_noise_validates_in_distribution(run_dir, tmp_path):  # noqa: F811
    """dfc-validate --hardware pcm-noise on the toy run: the samples pass with the process off,
    the read noise passes in distribution and on the emulation's own path (PWL), and the
    report shows the section."""
    import json

    from dfc_analog.validate import main as validate
    out = tmp_path / "val"
    assert validate([str(run_dir), "--hardware", "pcm-noise", "--v-scale", "0.5", "--samples",
                     "1", "--points", "201", "--out", str(out), "--no-plots",
                     "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    (check,) = report["read_noise"]
    assert check["pass"] and check["seeds"] == 8 and set(check["ratio"]) == {"output", "update"}
    assert check["same_path"]["pass"] and check["same_path"]["max_error"] <= 1e-3
    text = (out / "report.md").read_text()
    assert "## Read noise in distribution" in text and "on one noise path" in text
