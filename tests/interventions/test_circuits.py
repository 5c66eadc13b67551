"""saelab.interventions.circuits: the graph's shape, the sum rule that ties edges to node
attributions, and an edge weight against finite differences through the (tiny) model."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from saelab.extract.hooks import encode_activations
from saelab.extract.tokens import tokenize
from saelab.interventions import _gradients as G
from saelab.interventions.circuits import METRIC_NODE, NODE_COLUMNS, feature_circuit
from saelab.interventions.metrics import next_token_logprob

HOOKS = ("blocks.26.hook_resid_pre", "blocks.28.hook_resid_pre")
METRIC = next_token_logprob(-2)


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return torch.tensor(tokenize(tiny_model, ["The cat sat on the mat and"]).ids)


@pytest.fixture(scope="module")
def saes(tiny_model, make_sae):
    d = tiny_model.cfg.d_model
    return [make_sae(d, 16, HOOKS[0], seed=1), make_sae(d, 24, HOOKS[1], seed=2)]


@pytest.fixture(scope="module")
def full(tiny_model, saes, tokens):
    """Every active feature kept, so the edges out of a node reach all of its downstream nodes."""
    return feature_circuit(tiny_model, saes, tokens, METRIC, top=10_000)


def test_graph_has_feature_nodes_one_error_node_per_hook_and_the_metric(tiny_model, full):
    nodes, edges = full.nodes, full.edges
    assert list(nodes.columns) == NODE_COLUMNS and nodes["node"].is_unique
    assert full.hooks == HOOKS and full.method == "grad_x_act"
    assert list(nodes.loc[nodes["kind"] == "error", "node"]) == [f"{h}:error" for h in HOOKS]
    (metric_row,) = nodes.loc[nodes["kind"] == "metric"].itertuples()
    assert metric_row.node == METRIC_NODE and metric_row.layer == 2 and metric_row.activation == full.metric
    assert (nodes.loc[nodes["kind"] == "feature", "position"] > 0).all()
    layer = nodes.set_index("node")["layer"]
    assert ((layer[edges["target"]].to_numpy() - layer[edges["source"]].to_numpy()) == 1).all()
    graph = full.to_networkx()
    assert graph.number_of_nodes() == len(nodes) and graph.number_of_edges() == len(edges)
    assert nx.is_directed_acyclic_graph(graph)
    assert all(not point.fwd_hooks for point in tiny_model.hook_dict.values())


def test_edges_out_of_a_node_add_up_to_its_attribution(full):
    # x_B = decode(f_B) + e_B, so the edges from u to every node at hook B carry u's whole
    # grad x act attribution; with every active feature kept the sum rule is exact.
    nodes = full.nodes.set_index("node")
    outgoing = full.edges.groupby("source")["weight"].sum()
    for hook in HOOKS:
        members = nodes.index[nodes["hook"] == hook]
        np.testing.assert_allclose(
            outgoing[members].to_numpy(), nodes.loc[members, "attribution"].to_numpy(), rtol=1e-3, atol=1e-6
        )


def test_top_keeps_the_strongest_nodes_and_an_edge_matches_finite_differences(tiny_model, saes, tokens, full):
    circuit = feature_circuit(tiny_model, saes, tokens, METRIC, top=3)
    feats = circuit.nodes.loc[circuit.nodes["kind"] == "feature"]
    for hook in HOOKS:
        strongest = full.nodes.loc[(full.nodes["hook"] == hook) & (full.nodes["kind"] == "feature")]
        expected = strongest["attribution"].abs().nlargest(3).to_numpy()
        np.testing.assert_allclose(np.sort(feats.loc[feats["hook"] == hook, "attribution"].abs())[::-1], expected)
    between = circuit.edges.loc[circuit.edges["target"] != METRIC_NODE]
    between = between.loc[~between["source"].str.endswith(":error") & ~between["target"].str.endswith(":error")]
    edge = between.loc[between["weight"].abs().idxmax()]
    up, down = (circuit.nodes.set_index("node").loc[edge[k]] for k in ("source", "target"))
    # edge = (d metric / d d) * (d d / d u) * u; d metric / d d = attribution / activation of d.
    x = G.clean_activations(tiny_model, [HOOKS[0]], tokens)[HOOKS[0]]
    w_dec = saes[0].W_dec[int(up["feature"])].detach()
    eps, values = 0.05, []
    for sign in (1, -1):
        moved = x.clone()
        moved[0, int(up["position"])] += sign * eps * float(up["activation"]) * w_dec
        with torch.no_grad():
            x_b = tiny_model(moved, start_at_layer=26, stop_at_layer=28)
        values.append(encode_activations(saes[1], x_b)[0, int(down["position"]), int(down["feature"])].item())
    estimate = float(down["attribution"]) / float(down["activation"]) * (values[0] - values[1]) / (2 * eps)
    assert abs(edge["weight"]) > 1e-5
    assert edge["weight"] == pytest.approx(estimate, rel=0.01)


def test_bad_input_gets_clear_errors(tiny_model, make_sae, saes, tokens):
    with pytest.raises(ValueError, match="one prompt"):
        feature_circuit(tiny_model, saes, torch.cat([tokens, tokens]), METRIC)
    with pytest.raises(ValueError, match="top must be a positive integer"):
        feature_circuit(tiny_model, saes, tokens, METRIC, top=0)
    with pytest.raises(ValueError, match="method must be one of"):
        feature_circuit(tiny_model, saes, tokens, METRIC, method="exact")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist in model"):
        feature_circuit(tiny_model, make_sae(tiny_model.cfg.d_model, 8, "blocks.99.hook_resid_pre"), tokens, METRIC)
    with pytest.raises(ValueError, match="tokens are empty"):
        feature_circuit(tiny_model, saes, torch.zeros(1, 0, dtype=torch.long), METRIC)
