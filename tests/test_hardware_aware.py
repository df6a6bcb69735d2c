"""Hardware-aware training (--hardware): the effective network folds the realised circuit exactly
(its feed-forward state is HardwareModel.feedforward's), writes are a function of (chip, pass, minibatch), every rule
trains on the chip, and an interrupted hardware run resumes as if never stopped."""
import numpy as np
import pytest
import torch

import dfc_analog.training.loop as train_module
from dfc_analog.config.options import Config
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel
from dfc_analog.model.hardware_aware import HardwareChip, effective_network, settling_ratio
from dfc_analog.training.loop import run_training as train

from tests.test_train import read_metrics

SMALL = dict(train_samples=128, val_samples=20, test_samples=20, epochs=2, diagnostics=False,
             hardware="pcm", hardware_v_scale=0.5, batch_size=32)


@pytest.fixture
def chip_and_net(make_net):
    net = make_net((15, 10, 10, 5), activations=["tanh", "tanh", "linear"])
    return realise_network(net, load_spec("pcm"), 3, 0.5), net


def test_effective_network_is_the_circuits_feedforward(chip_and_net, batch):
    real, net = chip_and_net
    x, _ = batch(B=30)
    x = 0.4 * x
    vs, rs = effective_network(real, net).feedforward(x)
    model = HardwareModel(real, ControllerParams())
    ref = model.feedforward(x)
    assert torch.allclose(rs[-1], ref["rate"][:, -5:], rtol=0, atol=1e-13)
    z = model.act_gain * (ref["soma"] - model.act_offset)       # v' = g (v − δ)
    for i, v in enumerate(vs[:-1]):
        assert torch.allclose(v, model._layer(z, i), rtol=0, atol=1e-13)


def test_settling_ratio(chip_and_net):
    real, _ = chip_and_net
    n_g = max(float(l.noise_gain.max()) for l in real.layers)
    assert settling_ratio(real, 0.2, 1e-6) == pytest.approx(n_g / (2 * np.pi * 20e6) / 2e-7)


def test_writes_depend_on_chip_pass_and_batch(make_net):
    net = make_net((15, 10, 10, 5))
    chip = HardwareChip(net, load_spec("pcm"), 3, 0.5)
    a, b, c = chip.write(net, 0, 1), chip.write(net, 0, 1), chip.write(net, 0, 2)
    assert torch.equal(a.layers[0].G_pos, b.layers[0].G_pos)
    assert not torch.equal(a.layers[0].G_pos, c.layers[0].G_pos)
    alone = realise_network(net, load_spec("pcm"), 3, 0.5)       # the chip's own amplifiers
    assert torch.equal(a.layers[1].soma_offset, alone.layers[1].soma_offset)
    assert torch.equal(c.layers[2].act_gain, alone.layers[2].act_gain)


@pytest.mark.parametrize("method", ["dfc-ssa", "bp", "dfa", "dfc-ss", "dfc"])
def test_every_rule_trains_on_the_chip(tmp_path, method):
    extra = dict(epochs=1, train_samples=32) if method in ("dfc", "dfc-ss") else {}
    rows = train(Config(**{**SMALL, **extra}, method=method), tmp_path / method, progress=False)
    assert rows[-1]["train_loss"] < rows[1]["test_loss"] * 10 and \
        np.isfinite(rows[-1]["test_loss"])
    if method in ("dfc-ssa", "bp"):
        assert rows[-1]["test_loss"] < rows[0]["test_loss"]


def test_interrupted_hardware_run_resumes_as_if_never_stopped(tmp_path, monkeypatch):
    cfg = Config(**SMALL, method="dfc-ssa")
    train(cfg, tmp_path / "straight", progress=False)
    calls = {"n": 0}
    real = train_module.forward_update

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:                                     # epoch 2, batch 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "forward_update", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    with np.load(tmp_path / "straight/weights.npz") as a, \
            np.load(tmp_path / "resumed/weights.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert read_metrics(tmp_path / "straight")[-1]["test_loss"] == \
        read_metrics(tmp_path / "resumed")[-1]["test_loss"]
    ideal = Config(**{**SMALL, "hardware": ""}, method="dfc-ssa")
    train(ideal, tmp_path / "ideal", progress=False)
    with np.load(tmp_path / "straight/weights.npz") as a, \
            np.load(tmp_path / "ideal/weights.npz") as b:
        assert not np.array_equal(a["W1"], b["W1"])             # the chip made a difference


def test_bad_hardware_settings(tmp_path):
    with pytest.raises(ConfigError, match="unknown hardware preset 'pcn'"):
        train(Config(**{**SMALL, "hardware": "pcn"}), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match="linear output layer"):
        Config(**{**SMALL, "activations": ["tanh", "tanh", "tanh"]}).validate()
    with pytest.raises(ConfigError, match="hardware_v_scale"):
        Config(**{**SMALL, "hardware_v_scale": 0.0}).validate()
