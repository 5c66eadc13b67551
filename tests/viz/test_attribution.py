"""saelab.viz.attribution: bars per position and per node, token attribution bars and the
circuit graph, on hand-made data shaped like the interventions' results."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from saelab.viz.attribution import (
    NEGATIVE,
    POSITIVE,
    attribution_bars,
    circuit_figure,
    hook_label,
    token_attribution_figure,
)

L20, L25 = "blocks.20.hook_resid_pre", "blocks.25.hook_resid_pre"


def attribution_frame() -> pd.DataFrame:
    """Shaped like Attribution.frame: two hooks, positions 1-2, two rows of the batch."""
    rows = [
        # row, hook, position, token, node, feature, activation, attribution
        (0, L20, 1, " cat", "feature", 7, 1.0, 0.5),
        (0, L20, 1, " cat", "feature", 9, 2.0, -0.2),
        (0, L20, 1, " cat", "error", -1, 3.0, 0.1),
        (0, L20, 2, " sat", "error", -1, 3.0, -0.4),
        (0, L25, 2, " sat", "feature", 4, 1.5, 0.9),
        (0, L25, 1, " cat", "error", -1, 2.0, 0.0),
        (0, L25, 2, " sat", "error", -1, 2.0, 0.05),
        (1, L20, 1, " dog", "feature", 7, 1.0, 5.0),
    ]
    columns = ["row", "hook", "position", "token", "node", "feature", "activation", "attribution"]
    return pd.DataFrame(rows, columns=columns)


def test_hook_labels_are_short():
    assert hook_label(L20) == "L20"
    assert hook_label("blocks.3.hook_attn_out") == "L3 attn_out"
    assert hook_label("hook_embed") == "hook_embed"


def test_position_bars_sum_features_and_error_per_hook_and_position():
    fig = attribution_bars(attribution_frame())
    first, second = fig.data
    assert (first.name, second.name) == ("L20", "L25")
    assert list(first.x) == ["1 ␣cat", "2 ␣sat"]
    np.testing.assert_allclose(first.y, [0.5 - 0.2 + 0.1, -0.4])
    np.testing.assert_allclose(second.y, [0.0, 0.95])
    assert first.customdata[0][2] == "#7 (+0.5)" and first.customdata[1][2] == "none"
    assert fig.layout.barmode == "group"


def test_node_bars_show_the_top_nodes_of_one_row_coloured_by_sign():
    fig = attribution_bars(attribution_frame(), by="node", top=3)
    (bar,) = fig.data
    assert list(bar.x) == [-0.4, 0.5, 0.9]  # largest |attribution| at the top (last)
    assert list(bar.y) == ["L20 error @2 '␣sat'", "L20 #7 @1 '␣cat'", "L25 #4 @2 '␣sat'"]
    assert list(bar.marker.color) == [NEGATIVE, POSITIVE, POSITIVE]
    (other,) = attribution_bars(attribution_frame(), by="node", row=1).data
    assert list(other.x) == [5.0]


def test_attribution_bars_reject_bad_input():
    with pytest.raises(ValueError, match="lacks columns"):
        attribution_bars(attribution_frame().drop(columns="attribution"))
    with pytest.raises(ValueError, match="row 5 is not in the frame"):
        attribution_bars(attribution_frame(), row=5)
    with pytest.raises(ValueError, match="by must be"):
        attribution_bars(attribution_frame(), by="hook")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        attribution_bars(attribution_frame().assign(attribution=np.nan))
    with pytest.raises(ValueError, match="is empty"):
        attribution_bars(attribution_frame().iloc[:0])


def test_token_attribution_figure_shows_both_scores_and_their_agreement():
    result = SimpleNamespace(  # shaped like TokenAttribution
        frame=pd.DataFrame(
            {
                "position": [1, 2],
                "token": ["The", " cat"],
                "gradient_x_embedding": [0.1, 1.9],
                "occlusion": [0.0, 2.0],
            }
        ),
        tokens=["<s>", "The", " cat"],
        hook=L20,
        feature=12,
        position=2,
        activation=2.0,
        pearson=1.0,
        spearman=1.0,
    )
    fig = token_attribution_figure(result)  # type: ignore[arg-type]
    grad, occlusion = fig.data
    assert list(grad.x) == ["1 The", "2 ␣cat"] and list(grad.y) == [0.1, 1.9]
    assert list(occlusion.y) == [0.0, 2.0]
    assert "L20 #12" in fig.layout.title.text and "Pearson 1.00" in fig.layout.title.text


def circuit() -> SimpleNamespace:
    """Shaped like FeatureCircuit: two hooks of two nodes each, and the metric."""
    nodes = pd.DataFrame(
        {
            "node": [f"{L20}:1:7", f"{L20}:error", f"{L25}:2:4", f"{L25}:error", "metric"],
            "hook": [L20, L20, L25, L25, ""],
            "layer": [0, 0, 1, 1, 2],
            "kind": ["feature", "error", "feature", "error", "metric"],
            "position": [1, -1, 2, -1, -1],
            "token": [" cat", "", " sat", "", ""],
            "feature": [7, -1, 4, -1, -1],
            "activation": [1.0, 3.0, 1.5, 2.0, -2.5],
            "attribution": [0.5, -0.3, 0.9, 0.1, -2.5],
        }
    )
    edges = pd.DataFrame(
        {
            "source": [f"{L20}:1:7", f"{L20}:1:7", f"{L20}:error", f"{L25}:2:4", f"{L25}:error"],
            "target": [f"{L25}:2:4", f"{L25}:error", f"{L25}:2:4", "metric", "metric"],
            "weight": [0.4, 0.1, -0.3, 0.9, 0.1],
        }
    )
    return SimpleNamespace(nodes=nodes, edges=edges)


def test_circuit_figure_lays_hooks_out_as_columns_with_signed_weighted_edges():
    fig = circuit_figure(circuit())  # type: ignore[arg-type]
    lines = [t for t in fig.data if t.mode == "lines"]
    markers = {t.name: t for t in fig.data if t.mode == "markers+text"}
    assert set(markers) == {"feature nodes", "error nodes", "metric nodes"}
    assert list(markers["feature nodes"].x) == [0, 1] and markers["error nodes"].marker.symbol == "square"
    # Every edge drawn once; the strongest edge is the widest, negative edges are vermilion.
    assert sum(len(t.x) // 3 for t in lines) == 5
    widest = max(lines, key=lambda t: t.line.width)
    assert widest.line.color == POSITIVE and list(widest.x[:2]) == [1, 2]
    negative = [t for t in lines if t.line.color == NEGATIVE]
    assert len(negative) == 1 and list(negative[0].x[:2]) == [0, 1]
    assert list(fig.layout.xaxis.ticktext) == ["L20", "L25", "metric"]
    sizes = markers["feature nodes"].marker.size
    assert sizes[1] > sizes[0]  # |0.9| > |0.5|
    only_two = circuit_figure(circuit(), max_edges=2)  # type: ignore[arg-type]
    assert sum(len(t.x) // 3 for t in only_two.data if t.mode == "lines") == 2


def test_circuit_figure_rejects_edges_to_unknown_nodes():
    bad = circuit()
    bad.edges.loc[0, "target"] = "nowhere"
    with pytest.raises(ValueError, match="nodes that circuit.nodes lacks"):
        circuit_figure(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_edges"):
        circuit_figure(circuit(), max_edges=-1)  # type: ignore[arg-type]
