"""The hardware description, the device statistics and one realisation (dfc_analog.hardware).

Device statistics against the published numbers (PCM: σ_prog ≈ 1.06 µS at g_max, drift ν, read
noise ≈ 4 % of g at g_max after 1 h; RRAM: Wan et al. 2022 fits); the conductance mapping round
trip within the quantisation step; one seed, one realisation, without touching the global RNG.
"""
import math

import pytest
import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware import HardwareSpec, load_spec, preset_names, realise_network
from dfc_analog.hardware.devices import (pcm_drift_statistics, pcm_programming_sigma,
                                         pcm_read_sigma, program, rram_sigma)
from dfc_analog.hardware.spec import AmplifierSpec, SynapseSpec


def test_presets_load_and_only_ideal_is_ideal():
    names = preset_names()
    assert {"ideal", "pcm", "rram", "4bit", "8bit"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec.name == name and spec.description
        assert spec.is_ideal == (name == "ideal")
    pcm = load_spec("pcm")
    assert pcm.synapse.g_max == 25e-6 and pcm.synapse.device == "pcm"
    assert load_spec("8bit").synapse.levels == 256 and load_spec("4bit").synapse.levels == 16
    assert load_spec("rram").amplifier == pcm.amplifier           # extends pcm
    assert HardwareSpec() == HardwareSpec(name="ideal") and HardwareSpec().is_ideal


def test_spec_file_extends_a_preset(tmp_path):
    path = tmp_path / "six.toml"
    path.write_text('[hardware]\nextends = "4bit"\n[hardware.synapse]\nbits = 6\n'
                    '[hardware.amplifier]\ngain = 3e3\n')
    spec = load_spec(str(path))
    assert spec.synapse.levels == 64 and spec.amplifier.gain == 3e3
    assert spec.amplifier.gbw == load_spec("4bit").amplifier.gbw


@pytest.mark.parametrize("tables, words", [
    ({"synapse": {"g_min": 30e-6, "g_max": 25e-6}}, "g_min must lie in [0, g_max)"),
    ({"synapse": {"g_min": 25e-6, "g_max": 25e-6}}, "g_min must lie in [0, g_max)"),
    ({"synapse": {"bits": 0}}, "bits must be a whole number ≥ 1"),
    ({"synapse": {"bits": 2.5}}, "must be a whole number"),
    ({"synapse": {"programming_noise": -0.1}}, "programming_noise must be a non-negative"),
    ({"synapse": {"read_noise": -1.0}}, "read_noise must be a non-negative"),
    ({"amplifier": {"gain": 1.0, "gbw": 1e6}}, "gain A₀ must exceed 1"),
    ({"amplifier": {"gain": 0.5, "gbw": 1e6}}, "gain A₀ must exceed 1"),
    ({"amplifier": {"offset": -1e-3}}, "offset must be a non-negative"),
    ({"activation": {"gain_mismatch": -0.01}}, "gain_mismatch must be a non-negative"),
    ({"synapse": {"device": "flash"}}, "unknown synapse device 'flash'"),
    ({"synapse": {"gmax": 1e-6}}, "unknown hardware field 'synapse.gmax' (did you mean 'g_max'?)"),
    ({"amplifer": {}}, "unknown hardware field 'amplifer' (did you mean 'amplifier'?)"),
    ({"supply": {"vdd": -1.0}}, "vdd > 0 > vss"),
])
def test_bad_spec_is_one_sentence(tables, words):
    with pytest.raises(ConfigError) as err:
        HardwareSpec.from_dict(tables)
    text = str(err.value)
    assert words in text and text.endswith(".") and "\n" not in text


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError,
                       match=r"unknown hardware preset 'pcn' \(did you mean 'pcm'\?\)"):
        load_spec("pcn")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec("/nonexistent/hw.toml")


def test_pcm_statistics_reproduce_the_published_numbers():
    g_max = 25e-6
    g = torch.tensor([0.0, g_max], dtype=torch.float64)
    sigma = pcm_programming_sigma(g, g_max)
    assert sigma[0] == pytest.approx(0.26348e-6) and sigma[1] == pytest.approx(1.05538e-6)
    mu, s = pcm_drift_statistics(g[1:], g_max)             # at g_max: the clamped minimum
    assert float(mu) == pytest.approx(0.049) and float(s) == pytest.approx(0.008)
    mu, s = pcm_drift_statistics(torch.tensor([0.1 * g_max], dtype=torch.float64), g_max)
    assert float(mu) == pytest.approx(-0.0155 * math.log(0.1) + 0.0244)   # 0.0601
    read = pcm_read_sigma(g[1:], g_max, 3600.0) / g_max     # ≈ 4 % of g at g_max after 1 h
    assert float(read) == pytest.approx(0.0088 * math.sqrt(math.log(3600 / 5e-7)), rel=1e-6)
    assert 0.04 < float(read) < 0.043


def test_pcm_draws_have_the_published_spread():
    spec = SynapseSpec(device="pcm", g_max=25e-6, programming_noise=1.0)
    target = torch.full((200_000,), 25e-6, dtype=torch.float64)
    g = program(target, spec, torch.Generator().manual_seed(0))
    assert float(g.std()) == pytest.approx(1.05538e-6, rel=0.01)
    assert float(g.mean()) == pytest.approx(25e-6, abs=1e-8)
    drifted = program(target, SynapseSpec(device="pcm", g_max=25e-6, drift_time=3600.0),
                      torch.Generator().manual_seed(0))
    nu = -torch.log(drifted / target) / math.log(3600 / 20)
    assert float(nu.mean()) == pytest.approx(0.049, rel=0.01)
    assert float(nu.std()) == pytest.approx(0.008, rel=0.02)


def test_rram_fit_at_one_second():
    g_max = 40e-6
    sigma = rram_sigma(torch.tensor([0.0, g_max], dtype=torch.float64), g_max, 1.0)
    assert float(sigma[0]) == pytest.approx(0.348e-6)
    assert float(sigma[1]) == pytest.approx((0.348 + 16.030 - 43.853 + 45.393 - 16.815) * 1e-6)
    with pytest.raises(ConfigError, match="fitted at"):
        rram_sigma(sigma, g_max, 5.0)


def test_round_trip_within_the_quantisation_step(make_net):
    net = make_net()
    for bits in (4, 8):
        spec = HardwareSpec.from_dict({"synapse": {"device": "generic", "g_min": 1e-6,
                                                   "g_max": 25e-6, "bits": bits}})
        real = realise_network(net, spec, seed=3)
        s = spec.synapse
        step = (s.g_max - s.g_min) / (2 ** bits - 1)
        for (W, b, Q), layer, Wn, bn, Qn in zip(real.effective_weights(), real.layers, net.W,
                                               net.b, net.Q):
            half = 0.5 * step * layer.R_f[:, None] * (1 + 1e-9)
            assert bool(((W - Wn.double()).abs() <= half).all())
            assert bool(((Q - Qn.double()).abs() <= half).all())
            assert bool(((b - bn.double()).abs() <= half[:, 0]).all())
            for G in (layer.G_pos, layer.G_neg, layer.GQ_pos, layer.GQ_neg):
                levels = (G - s.g_min) / step          # every device on one of its states
                assert bool(((levels - levels.round()).abs() < 1e-6).all())
                assert float(G.min()) >= s.g_min and float(G.max()) <= s.g_max * (1 + 1e-12)


@pytest.mark.parametrize("scale", ["layer", "column"])
def test_continuous_mapping_is_exact_and_uses_the_range(make_net, scale):
    net = make_net()
    spec = HardwareSpec.from_dict({"synapse": {"g_min": 2e-6, "g_max": 20e-6,
                                               "weight_scale": scale}})
    real = realise_network(net, spec, seed=0)
    for (W, b, Q), layer, Wn in zip(real.effective_weights(), real.layers, net.W):
        assert torch.allclose(W, Wn.double(), rtol=0, atol=1e-12)
        top = torch.maximum(layer.G_pos, layer.G_neg).amax(dim=1)
        if scale == "column":      # every neuron's largest weight sits at g_max
            top = torch.maximum(top, torch.maximum(layer.GQ_pos, layer.GQ_neg).amax(dim=1))
            top = torch.maximum(top, torch.maximum(layer.Gb_pos, layer.Gb_neg))
            assert torch.allclose(top, torch.full_like(top, 20e-6))
        else:
            assert float(top.max()) <= 20e-6 * (1 + 1e-12)


def test_one_seed_one_realisation_and_the_global_rng_untouched(make_net):
    net = make_net()
    spec = load_spec("pcm")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = realise_network(net, spec, seed=7)
    assert torch.equal(torch.rand(3), expected)          # no draw from the global generator
    b = realise_network(net, spec, seed=7)
    c = realise_network(net, spec, seed=8)
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        assert torch.equal(la.G_pos, lb.G_pos) and torch.equal(la.soma_offset, lb.soma_offset)
        assert not torch.equal(la.G_pos, lc.G_pos)
    assert a.device_count() == sum(2 * (w.numel() + bb.numel() + q.numel())
                                   for w, bb, q in zip(net.W, net.b, net.Q))


def test_amplifier_pole_time():
    amp = AmplifierSpec(gain=1e4, gbw=20e6)
    assert amp.pole_time == pytest.approx(1e4 / (2 * math.pi * 20e6))
    assert AmplifierSpec().pole_time == 0 and AmplifierSpec().ideal
    with pytest.raises(ConfigError, match="both be finite"):
        AmplifierSpec(gain=1e4).check()


def test_drift_compensation_restores_the_layer_total(make_net):
    """One factor per layer: Σ|W| + Σ|b| + Σ|Q| of the effective weights is the programmed one,
    while the drift alone loses ≈ (3600 / 20)^-0.05 of it."""
    net = make_net()
    tables = {"synapse": {"device": "pcm", "drift_time": 3600.0}}
    drifted = realise_network(net, HardwareSpec.from_dict(tables), seed=1)
    tables["synapse"]["drift_compensation"] = True
    fixed = realise_network(net, HardwareSpec.from_dict(tables), seed=1)
    for (W, b, Q), (Wd, bd, Qd), Wn, bn, Qn in zip(fixed.effective_weights(),
                                                   drifted.effective_weights(), net.W, net.b,
                                                   net.Q):
        total = float(Wn.detach().abs().sum() + bn.detach().abs().sum() + Qn.abs().sum())
        assert float(W.abs().sum() + b.abs().sum() + Q.abs().sum()) == pytest.approx(total)
        lost = float(Wd.abs().sum() + bd.abs().sum() + Qd.abs().sum()) / total
        assert 0.7 < lost < 0.85
    with pytest.raises(ConfigError, match="drift_compensation' must be true or false, got 1"):
        HardwareSpec.from_dict({"synapse": {"drift_compensation": 1}})
