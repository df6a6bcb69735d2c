"""The component graph: counts, component values in SI units, weights read back, JSON round trip."""
import json

import networkx as nx
import numpy as np
import pytest
import torch

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import ConfigError, DFCError
from dfc_analog.circuit.graph import (Scaling, build_graph, load_graph, save_graph, summary,
                              synapse_matrices)

PARAMS = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5, leak="total")


def test_counts_by_kind(make_net):
    sizes = [4, 3, 2]
    g = build_graph(make_net(sizes), PARAMS)
    nodes = {k: sum(1 for _, kind in g.nodes(data="kind") if kind == k)
             for k in set(dict(g.nodes(data="kind")).values())}
    hidden = sum(sizes[1:])
    assert nodes == {"input": 4, "basal": hidden, "apical": hidden, "soma": hidden,
                     "rate": hidden, "bias": hidden, "enable": 1, "target": 2, "error": 2,
                     "integrator": 2, "proportional": 2, "control": 2}
    edges = {}
    for *_, kind in g.edges(data="kind"):
        edges[kind] = edges.get(kind, 0) + 1
    assert edges["forward"] == 4 * 3 + 3 * 2
    assert edges["feedback"] == hidden * 2
    assert edges["dendrite"] == 2 * hidden and edges["leak"] == 2 and edges["sum"] == 4
    text = summary(g)
    assert "4-3-2 network" in text and "forward 18" in text and "feedback 10" in text


def test_component_values_follow_the_scaling(make_net):
    net = make_net([4, 3, 2])
    sc = Scaling(time_scale=2e-6, v_scale=0.5, resistance=1e5)
    x = np.linspace(-1, 1, 4)
    r_star = np.array([0.3, -0.2])
    g = build_graph(net, PARAMS, sc, x, r_star)
    soma = g.nodes["l1_soma_2"]
    assert soma["R"] == 1e5 and soma["C"] * soma["R"] == pytest.approx(0.2 * 2e-6, rel=1e-14)
    integ = g.nodes["ctl_int_1"]
    assert integ["C"] * integ["R_in"] == pytest.approx(2e-6, rel=1e-14)
    assert g.nodes["in_3"]["I"] * g.nodes["in_3"]["R"] == pytest.approx(x[3] * 0.5)
    assert g.nodes["ctl_target_0"]["V"] == pytest.approx(0.3 * 0.5)
    W = net.W[1].detach().numpy()
    edge = g.edges["l1_rate_1", "l2_basal_0"]
    assert edge["weight"] == W[0, 1] and edge["G"] == pytest.approx(W[0, 1] / 1e5, rel=1e-15)
    assert edge["realisation"] == "vccs"
    assert g.edges["ctl_u_0", "ctl_int_0"]["G"] == pytest.approx(-PARAMS.alpha / 1e5)
    # layer-1 synapses on the constant input are current sources W x v_scale / R
    W1 = net.W[0].detach().numpy()
    first = g.edges["in_3", "l1_basal_0"]
    assert first["realisation"] == "isource"
    assert first["I"] == pytest.approx(W1[0, 3] * x[3] * 0.5 / 1e5, rel=1e-15)
    assert build_graph(net, PARAMS, sc, x, constant_input=False).edges[
        "in_3", "l1_basal_0"]["realisation"] == "vccs"


def test_weights_read_back_exactly(make_net):
    net = make_net([5, 4, 3, 2], feedback_init="xavier")
    g = build_graph(net, PARAMS)
    for got, want in zip(synapse_matrices(g, "forward"), net.W):
        np.testing.assert_array_equal(got, want.detach().numpy())
    for got, want in zip(synapse_matrices(g, "feedback"), net.Q):
        np.testing.assert_array_equal(got, want.detach().numpy())


def test_json_round_trip(make_net, tmp_path):
    g = build_graph(make_net([4, 3, 2]), PARAMS, x=np.ones(4), r_star=np.zeros(2))
    save_graph(g, tmp_path / "g.json")
    back = load_graph(tmp_path / "g.json")
    assert back.graph == json.loads(json.dumps(g.graph))
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert nx.utils.edges_equal(back.edges(data=True), g.edges(data=True))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DFCError, match="cannot read component graph"):
        load_graph(tmp_path / "bad.json")


def test_bad_input(make_net):
    net = make_net([4, 3, 2])
    with pytest.raises(ConfigError, match=r"input x must have shape \(4,\)"):
        build_graph(net, PARAMS, x=np.ones(5))
    with pytest.raises(ConfigError, match="non-finite"):
        build_graph(net, PARAMS, r_star=torch.tensor([np.nan, 0.0]))
    with pytest.raises(ConfigError, match="resistance must be a positive number"):
        Scaling(resistance=-1.0)
