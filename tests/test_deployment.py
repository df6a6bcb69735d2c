"""Deployment over many realisations: the stack of R chips holds exactly the devices that
``realise`` draws for each seed, and the batched, folded feed-forward equals the emulation's
closed form (HardwareModel.feedforward) chip by chip; float32 against float64; clipping chips
are counted, not fatal; the ideal spec gives the ideal network."""
import pytest
import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware import load_spec, realise_network
from dfc_analog.hardware.batch import LAYER_FIELDS, realise_network_stack
from dfc_analog.model.deployment import deploy, fold
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.hardware import HardwareModel

SEEDS = [3, 11, 12]


@pytest.fixture
def net(make_net):
    return make_net((15, 10, 10, 5), activations=["tanh", "tanh", "linear"])


def hardware_output(net, spec, seed, x):
    out = HardwareModel(realise_network(net, spec, seed), ControllerParams()).feedforward(x)
    return out["rate"][:, -net.layer_sizes[-1]:]


def test_stack_holds_each_seeds_realisation_exactly(net):
    spec = load_spec("pcm")
    stack = realise_network_stack(net, spec, SEEDS, workers=2)
    assert len(stack) == len(SEEDS) and stack.layer_sizes == net.layer_sizes
    for r, seed in enumerate(SEEDS):
        alone, held = realise_network(net, spec, seed), stack.realisation(r)
        assert held.seed == seed
        assert torch.equal(alone.controller_offset, held.controller_offset)
        for la, lh in zip(alone.layers, held.layers):
            for name in LAYER_FIELDS:
                assert torch.equal(getattr(la, name), getattr(lh, name)), name


@pytest.mark.parametrize("preset", ["pcm", "pcm-noise"])
def test_stack_holds_the_static_devices_with_or_without_a_read_process(net, preset):
    """A stack's chip is realise(seed).without_read_process(): the settled feed-forward state
    has no read-noise process (and chips without one, read_sigma None, stack as well)."""
    spec = load_spec(preset)
    held = realise_network_stack(net, spec, SEEDS[:2]).realisation(1)
    alone = realise_network(net, spec, SEEDS[1])
    assert (alone.read_interval is not None) == (preset == "pcm-noise")
    assert held.read_interval is None
    for la, lh in zip(alone.without_read_process().layers, held.layers):
        assert la.read_sigma is None and lh.read_sigma is None
        for name in LAYER_FIELDS:
            assert torch.equal(getattr(la, name), getattr(lh, name)), name


@pytest.mark.parametrize("preset", ["pcm", "pcm-wires", "pcm-mesh"])
def test_batched_feedforward_equals_the_emulation_chip_by_chip(net, batch, preset):
    """Every effect of the emulation's feed-forward state, the wires' IR drop (the mesh's
    column coupling included) and the op-amp controller's rest output included."""
    spec = load_spec(preset)
    x, _ = batch(B=40)
    x = 0.3 * x
    out, clipped = fold(realise_network_stack(net, spec, SEEDS)).feedforward(x)
    assert out.shape == (len(SEEDS), 40, 5) and not bool(clipped.any())
    for r, seed in enumerate(SEEDS):
        ref = hardware_output(net, spec, seed, x)
        # one closed form, regrouped: the difference is float64 rounding of sums of ~n terms
        assert torch.allclose(out[r], ref, rtol=0, atol=1e-13 * float(ref.abs().max()) + 1e-14)


def test_clipping_chips_are_counted_where_the_emulation_refuses(net, batch):
    spec = load_spec("pcm")                             # rails at ±1.4 V
    x, _ = batch(B=40)
    x = 0.5 * x
    seeds = list(range(12))
    _, clipped = fold(realise_network_stack(net, spec, seeds)).feedforward(x)
    assert 0 < int(clipped.sum()) < len(seeds)          # the spread decides, chip by chip
    for r, seed in enumerate(seeds):
        try:
            hardware_output(net, spec, seed, x)
            refused = False
        except ConfigError:
            refused = True
        assert refused == bool(clipped[r]), seed


def test_float32_against_float64(make_net):
    """Class agreement and an output bound: float32 rounds each of the n_in products of a
    weighted sum by ≤ 2⁻²⁴, so |Δr_L| ≲ 2⁻²⁴ Σ|w||a| per layer, propagated through layers of
    gain ≲ 1; 1e-5 of the output scale covers the three layers of a 784-wide network."""
    net = make_net((784, 64, 64, 10), activations=["tanh", "tanh", "linear"], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 784, generator=gen, dtype=torch.float64) * 0.3
    folded = fold(realise_network_stack(net, load_spec("pcm"), [0, 1, 2, 3]))
    out64, _ = folded.feedforward(x)
    out32, _ = folded.to(torch.float32).feedforward(x)
    diff = (out32.double() - out64).abs().max()
    assert float(diff) <= 1e-5 * float(out64.abs().max())
    top2 = out64.topk(2, dim=2).values
    clear = (top2[..., 0] - top2[..., 1]) > 2 * float(diff)     # not a tie at float32 precision
    assert bool(clear.float().mean() > 0.95)
    assert torch.equal(out32.argmax(2)[clear], out64.argmax(2)[clear])


def test_ideal_spec_deploys_the_ideal_network(net, batch):
    x, _ = batch(B=20)
    out, clipped = fold(realise_network_stack(net, load_spec("ideal"), [0, 1])).feedforward(x)
    _, rs = net.feedforward(x)
    assert not bool(clipped.any())
    assert torch.allclose(out, rs[-1].expand_as(out), rtol=0, atol=1e-12)


def test_deploy_metrics_do_not_depend_on_the_chunks(net, batch):
    spec = load_spec("pcm")
    x, _ = batch(B=50)
    x = 0.3 * x
    y = torch.arange(50) % 5
    seeds = list(range(5))
    a = deploy(net, spec, seeds, x, y, "cross_entropy", dtype=torch.float64, chunk=5, samples=50)
    b = deploy(net, spec, seeds, x, y, "cross_entropy", dtype=torch.float64, chunk=2, samples=16,
               workers=2)
    assert torch.allclose(a.loss, b.loss, rtol=1e-12) and torch.equal(a.error, b.error)
    for r, seed in enumerate(seeds):
        out = hardware_output(net, spec, seed, x)
        wrong = float((out.argmax(1) != y).double().mean()) * 100
        loss = float(torch.nn.functional.cross_entropy(out, y))
        assert a.error[r].item() == pytest.approx(wrong) and a.loss[r].item() == pytest.approx(loss)
    real = deploy(net, spec, seeds, x, torch.randn(50, 5, dtype=torch.float64), "mse",
                  dtype=torch.float64)
    assert real.error is None and bool((real.loss > 0).all())
