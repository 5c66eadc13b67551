"""The lineage figures: event bars beside their null, the specialists' Sankey and one
lineage highlighted on the same texts, all from hand-made or planted data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from saelab import viz
from saelab.evolution import trace_lineages
from saelab.viz.lineages import FeatureAcrossLayers
from saelab.viz.style import category_color
from tests.evolution._lineage_helpers import HOOKS, per_token_from_dense, planted_decoders
from tests.viz._helpers import data_values


def _events() -> pd.DataFrame:
    rows = []
    for pair in (
        "blocks.4.hook_resid_pre → blocks.8.hook_resid_pre",
        "blocks.8.hook_resid_pre → blocks.12.hook_resid_pre",
    ):
        for k, event in enumerate(("death", "persist", "split", "merge", "birth")):
            rows.append({"pair": pair, "event": event, "count": 100 + k, "null_count": k})
    return pd.DataFrame(rows)


def test_event_bars_put_each_count_beside_its_null():
    fig = viz.lineage_event_bars(_events())
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["measured", "null"]
    measured, null = fig.data
    pairs, events = measured.x
    assert list(events[:5]) == ["persist", "split", "merge", "birth", "death"]  # the documented order
    assert list(pairs[:5]) == ["L4 → L8"] * 5 and list(pairs[5:]) == ["L8 → L12"] * 5
    assert list(measured.y[:5]) == [101, 102, 103, 104, 100]
    assert list(null.y[:5]) == [1, 2, 3, 4, 0]
    assert fig.layout.barmode == "group" and all(t.hovertemplate for t in fig.data)


def test_event_bars_refuse_a_frame_without_the_null():
    with pytest.raises(ValueError, match="null_count"):
        viz.lineage_event_bars(_events().drop(columns="null_count"))


@pytest.fixture(scope="module")
def lineages():
    decoders, key = planted_decoders()
    return trace_lineages(decoders, method="decoder", progress=False), key


def test_sankey_shows_each_specialists_lineage_in_its_colour(lineages):
    lin, key = lineages
    specialists = pd.DataFrame(
        {"sae": [HOOKS[0], HOOKS[0]], "category": ["math", "urls"], "feature": [key["split"], 0]}
    )
    fig = viz.lineage_sankey(lin, specialists)
    sankey = fig.data[0]
    labels = list(sankey.node.label)
    # The split (1 + 2 + 2 nodes) and the persisting feature 0 (one per hook).
    assert len(labels) == 5 + 3
    assert "L4 #100 ★" in labels and "L4 #0 ★" in labels
    assert f"L12 #{int(key['perm'][0])}" in labels
    colors = dict(zip(labels, sankey.node.color, strict=True))
    assert colors["L4 #100 ★"] == category_color("math") and colors["L4 #0 ★"] == category_color("urls")
    assert len(sankey.link.source) == 4 + 2
    xs = dict(zip(labels, sankey.node.x, strict=True))
    assert xs["L4 #0 ★"] < xs["L8 #0"] < xs[f"L12 #{int(key['perm'][0])}"]
    split_links = [
        v for s, v in zip(sankey.link.source, sankey.link.customdata, strict=True) if labels[s] == "L4 #100 ★"
    ]
    np.testing.assert_allclose(split_links, np.cos(np.deg2rad(40.0)), atol=1e-5)


def test_sankey_names_the_specialists_without_links_instead_of_drawing_them(lineages):
    lin, key = lineages
    dead = key["dead"][0]
    specialists = pd.DataFrame({"sae": [HOOKS[0]] * 2, "category": ["math", "urls"], "feature": [dead, 0]})
    fig = viz.lineage_sankey(lin, specialists)
    labels = list(fig.data[0].node.label)
    assert len(labels) == 3 and f"L4 #{dead} ★" not in labels
    assert f"no link at any layer (not drawn): L4 #{dead} (math)" in fig.layout.title.text
    # Positions are given for the drawn nodes only, one column per hook.
    assert sorted(fig.data[0].node.x) == pytest.approx([0.001, 0.5, 0.999])
    nothing = viz.lineage_sankey(lin, specialists.iloc[:1])
    assert len(nothing.data[0].node.label) == 0 and "not drawn" in nothing.layout.title.text


def test_sankey_refuses_specialists_outside_the_lineages(lineages):
    lin, _ = lineages
    with pytest.raises(ValueError, match="Unknown hook"):
        viz.lineage_sankey(lin, pd.DataFrame({"sae": ["elsewhere"], "category": ["math"], "feature": [0]}))
    with pytest.raises(ValueError, match="lacks columns"):
        viz.lineage_sankey(lin, pd.DataFrame({"sae": [HOOKS[0]], "feature": [0]}))


def _per_token() -> dict:
    a = np.zeros((6, 3))
    a[1, 2], a[4, 2] = 2.0, 1.0
    b = np.zeros((6, 4))
    b[1, 0] = 5.0
    return {HOOKS[0]: per_token_from_dense(a, tokens_per_text=2), HOOKS[1]: per_token_from_dense(b, tokens_per_text=2)}


def test_feature_across_layers_highlights_each_feature_on_the_same_texts(tmp_path):
    view = viz.feature_across_layers(
        _per_token(), {HOOKS[0]: 2, HOOKS[1]: [0, 3]}, texts=[0, 2], labels=["math", "urls", "math"],
        similarity={(HOOKS[1], 0): 0.81}, title="One lineage",
    )  # fmt: skip
    assert isinstance(view, FeatureAcrossLayers) and len(view.blocks) == 3
    titles = [block.title for block in view.blocks]
    assert titles[0].startswith("L4 (blocks.4.hook_resid_pre): feature #2") and "0.81" in titles[1]
    for block in view.blocks:
        assert [row.tokens for row in block.rows] == [["t0", "t1"], ["t4", "t5"]]
    values = data_values(view.html())
    assert len(values) == 3 * 4
    assert values[:4] == [0.0, 2.0, 1.0, 0.0]
    assert "One lineage" in view._repr_html_()
    path = view.save(tmp_path / "lineage.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_feature_across_layers_refuses_bad_input():
    per_token = _per_token()
    with pytest.raises(ValueError, match="no features for"):
        viz.feature_across_layers(per_token, {HOOKS[2]: 0}, texts=[0])
    with pytest.raises(ValueError, match="features is empty"):
        viz.feature_across_layers(per_token, {}, texts=[0])
    with pytest.raises(ValueError, match="texts is empty"):
        viz.feature_across_layers(per_token, {HOOKS[0]: 0}, texts=[])
    with pytest.raises(ValueError, match="out of range"):
        viz.feature_across_layers(per_token, {HOOKS[0]: 7}, texts=[0])
    with pytest.raises(ValueError, match="out of range"):
        viz.feature_across_layers(per_token, {HOOKS[0]: 0}, texts=[9])


def test_feature_across_layers_takes_a_lineage_frame(lineages):
    lin, key = lineages
    frame = lin.lineage_of(HOOKS[1], key["merged"])
    # Per-token features of the planted widths (105, 106, 106 features), all zero but one.
    widths = [lin.n_features[h] for h in HOOKS]
    dense = [np.zeros((4, w)) for w in widths]
    dense[1][0, key["merged"]] = 3.0
    per_token = {h: per_token_from_dense(d, tokens_per_text=2) for h, d in zip(HOOKS, dense, strict=True)}
    view = viz.feature_across_layers(per_token, frame, texts=[0, 1])
    titles = [block.title for block in view.blocks]
    assert len(titles) == len(frame) == 4
    assert [t.split(" ")[0] for t in titles] == ["L4", "L4", "L8", "L12"]  # shallow to deep, as lineage_of orders
    assert f"linked to L8 #{key['merged']}, similarity 0.71" in titles[0] and "similarity" not in titles[2]


def test_feature_across_layers_shows_the_most_similar_few_per_layer():
    per_token = _per_token()
    similarity = {(HOOKS[1], 0): 0.4, (HOOKS[1], 1): 0.9, (HOOKS[1], 3): 0.6}
    view = viz.feature_across_layers(
        per_token, {HOOKS[0]: 2, HOOKS[1]: [0, 1, 2, 3]}, texts=[0], similarity=similarity, per_hook=2
    )
    titles = [block.title for block in view.blocks]
    assert [t.split(": feature #")[1].split(" ")[0] for t in titles] == ["2", "1", "3"]
    assert "2 more at this layer not shown" in titles[1] and "not shown" not in titles[0]
    with pytest.raises(ValueError, match="per_hook"):
        viz.feature_across_layers(per_token, {HOOKS[0]: 2}, texts=[0], per_hook=0)
