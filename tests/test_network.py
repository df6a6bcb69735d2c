"""The network of eq. (2): feed-forward pass, analytic Jacobian J, feedback initialisation."""
import numpy as np
import pytest
import torch

from dfc_analog import DFCNetwork


@pytest.mark.parametrize("acts", [["tanh", "tanh", "linear"], ["relu", "sigmoid", "tanh"]])
def test_jacobian_matches_autograd(make_net, batch, acts):
    net = make_net(activations=acts)
    x, _ = batch(B=3)
    vs, _ = net.feedforward(x)
    J = net.jacobian(vs)
    for s in range(3):
        blocks = []
        for i in range(net.num_layers):
            def from_layer(v_i, i=i):  # r_L when v_i is perturbed and the layers above follow
                r = net.phi(i, v_i)
                for k in range(i + 1, net.num_layers):
                    r = net.phi(k, net.W[k] @ r + net.b[k])
                return r
            blocks.append(torch.autograd.functional.jacobian(from_layer, vs[i][s].detach()))
        torch.testing.assert_close(J[s], torch.cat(blocks, dim=1).detach())


@pytest.mark.parametrize("acts", [["tanh", "tanh", "linear"], ["relu", "sigmoid", "tanh"]])
def test_forward_mode_loop_gain_is_j_times_q(make_net, batch, acts):
    """J Q in forward mode (the DFC-SSA wake phase) is the product of the analytic J and Q."""
    net = make_net(activations=acts, feedback_init="xavier")
    x, _ = batch(B=7)
    vs, _ = net.feedforward(x)
    torch.testing.assert_close(net.jacobian_feedback(vs), net.jacobian(vs) @ net.feedback_matrix(),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("acts", [["tanh", "tanh", "linear"], ["relu", "sigmoid", "tanh"]])
def test_jacobian_written_in_place_from_the_rates_is_the_same(make_net, batch, acts):
    """J written into a caller's tensor, with φ' taken from the rates the feed-forward pass
    already has, and J Q in forward mode from them, are the plain computations to the bit."""
    net = make_net(activations=acts, feedback_init="xavier")
    x, _ = batch(B=6)
    vs, rs = net.feedforward(x)
    out = torch.full((6, net.layer_sizes[-1], sum(net.layer_sizes[1:])), float("nan"),
                     dtype=x.dtype)
    with torch.no_grad():              # as the expected sleep phase computes it
        net.jacobian_blocks(vs, rs, out=out)
    assert torch.equal(out, net.jacobian(vs))
    assert torch.equal(net.jacobian_feedback(vs, rs), net.jacobian_feedback(vs))
    for i in range(net.num_layers):
        assert torch.equal(net.dphi(i, vs[i], rs[i]), net.dphi(i, vs[i]))


def test_all_finite_finds_nan_and_inf_and_not_an_overflowing_sum():
    from dfc_analog.model.network import all_finite
    big = torch.full((4,), 3e38, dtype=torch.float32)          # finite, but its sum overflows
    assert all_finite([torch.ones(3), big])
    assert not all_finite([torch.ones(3), torch.tensor([1.0, float("nan")])])
    assert not all_finite([torch.tensor([float("-inf"), 2.0]), big])
    assert all_finite([])


def test_feedforward_is_equation_2(make_net, batch):
    net = make_net()
    x, _ = batch(B=5)
    vs, rs = net.feedforward(x)
    r = x
    for i in range(net.num_layers):
        v = r @ net.W[i].detach().T + net.b[i].detach()
        torch.testing.assert_close(vs[i], v)
        r = net.phi(i, v)
        torch.testing.assert_close(rs[i], r)


def test_weight_product_feedback(make_net):
    net = make_net(sizes=(6, 5, 4, 3))
    W = [w.detach().numpy() for w in net.W]
    Q = [q.detach().numpy() for q in net.Q]
    np.testing.assert_allclose(Q[2], np.eye(3))
    np.testing.assert_allclose(Q[1], W[2].T)
    np.testing.assert_allclose(Q[0], W[1].T @ W[2].T)


def test_xavier_feedback_keeps_identity_output(make_net):
    net = make_net(feedback_init="xavier")
    torch.testing.assert_close(net.Q[-1], torch.eye(5, dtype=torch.float64))
    assert net.Q[0].shape == (10, 5)


def test_dtypes(batch):
    for dtype in (torch.float32, torch.float64):
        net = DFCNetwork([4, 3, 2], ["tanh", "linear"], dtype=dtype)
        x = torch.zeros(2, 4, dtype=dtype)
        assert net.feedforward(x)[1][-1].dtype == dtype
