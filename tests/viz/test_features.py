"""saelab.viz.features: the feature heatmap, top-feature bars, category bars, logit-lens bars
and co-activation heatmap, on hand-made frames shaped like saelab.analysis output.

Assertions read fig.data / fig.layout; nothing is displayed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab import viz
from saelab.viz import style
from saelab.viz.style import CATEGORY_COLORS


def test_feature_heatmap_keeps_values_rows_and_category_strip():
    matrix = torch.tensor([[0.0, 1.5], [2.0, 0.0], [0.5, 0.25]])
    labels = ["def f(): pass", "same label", "same label"]  # duplicate labels must stay two rows
    fig = viz.feature_heatmap(matrix, labels, [7, 42], categories=["python", "math", "python"])
    strip, heat = fig.data
    np.testing.assert_allclose(np.asarray(heat.z), matrix.numpy())
    assert list(heat.x) == ["#7", "#42"]
    assert list(heat.y) == [0, 1, 2]
    assert "%{customdata}" in heat.hovertemplate and "%{z" in heat.hovertemplate
    assert list(fig.layout.yaxis.ticktext) == labels
    # The strip's value for each row falls inside that row's category colour band.
    scale = [(float(stop), color) for stop, color in strip.colorscale]
    k = strip.zmax
    for row, category in enumerate(["python", "math", "python"]):
        v = strip.z[row][0] / k
        band = [c for (lo, c), (hi, _) in zip(scale[::2], scale[1::2], strict=True) if lo <= v <= hi]
        assert band == [CATEGORY_COLORS[category]]


def test_feature_heatmap_without_categories_and_numpy_input():
    fig = viz.feature_heatmap(np.eye(3), ["a", "b", "c"], [1, 2, 3], title="T")
    assert len(fig.data) == 1
    assert fig.layout.title.text == "T"
    assert fig.layout.xaxis.title.text == "feature"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(matrix=np.ones((2, 2)), text_labels=["a"], feature_ids=[1, 2]), "text_labels has 1"),
        (dict(matrix=np.ones((2, 2)), text_labels=["a", "b"], feature_ids=[1]), "feature_ids has 1"),
        (dict(matrix=np.ones(2), text_labels=["a", "b"], feature_ids=[1]), "2-D"),
        (dict(matrix=[[np.nan, 1.0]], text_labels=["a"], feature_ids=[1, 2]), "NaN"),
        (dict(matrix=np.ones((1, 2)), text_labels=["a"], feature_ids=[1, 2], categories=[]), "categories has 0"),
    ],
)
def test_feature_heatmap_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.feature_heatmap(**kwargs)


def _strongest_long() -> pd.DataFrame:
    """Shaped like LayerComparison.strongest: sae, rank, feature, max_activation (top 2 per SAE)."""
    return pd.DataFrame(
        {
            "sae": ["L5", "L5", "L10", "L10"],
            "rank": [1, 2, 1, 2],
            "feature": [11, 12, 21, 22],
            "max_activation": [9.0, 4.0, 30.0, 20.0],
        }
    )


def test_top_features_bar_by_sae_groups_one_trace_per_rank():
    fig = viz.top_features_bar(_strongest_long(), value="max_activation", by="sae")
    assert [t.name for t in fig.data] == ["rank 1", "rank 2"]
    rank1, rank2 = fig.data
    assert list(rank1.x) == ["L5", "L10"] and list(rank1.y) == [9.0, 30.0]
    assert list(rank1.text) == ["#11", "#21"]
    assert list(rank2.customdata) == [12, 22]
    assert fig.layout.barmode == "group"
    assert fig.layout.yaxis.title.text == "max activation"
    assert "feature #%{customdata}" in rank1.hovertemplate


def test_top_features_bar_single_ranking_in_rank_order_with_percent_axis():
    frequent = pd.DataFrame(  # shaped like analysis.frequent
        {
            "rank": [2, 1, 3],
            "feature": [5, 9, 1],
            "frequency": [0.5, 0.9, 0.1],
            "n_active": [5, 9, 1],
            "mean_when_active": [1.0, 2.0, 3.0],
        }
    )
    fig = viz.top_features_bar(frequent, value="frequency", by=None)
    (bar,) = fig.data
    assert list(bar.x) == ["#9", "#5", "#1"]
    assert list(bar.y) == [0.9, 0.5, 0.1]
    assert fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.yaxis.title.text == "share of texts where active"


def test_top_features_bar_rejects_missing_columns_and_duplicates():
    with pytest.raises(ValueError, match="lacks columns \\['score'\\]"):
        viz.top_features_bar(_strongest_long(), value="score")
    doubled = pd.concat([_strongest_long(), _strongest_long()])
    with pytest.raises(ValueError, match="same \\(sae, rank\\)"):
        viz.top_features_bar(doubled)


def test_category_bar_uses_the_shared_palette_and_highlights():
    means = pd.DataFrame(  # shaped like FeatureSummary.category_means
        {"category": ["python", "math", "social"], "mean": [0.1, 2.0, 0.0], "frac_active": [0.2, 0.9, 0.0]}
    )
    fig = viz.category_bar(means, highlight="math")
    (bar,) = fig.data
    assert list(bar.marker.color) == [CATEGORY_COLORS[c] for c in ["python", "math", "social"]]
    assert list(bar.marker.line.width) == [0, 3, 0]
    assert list(bar.customdata) == [0.2, 0.9, 0.0]
    with pytest.raises(ValueError, match="highlight='urls'"):
        viz.category_bar(means, highlight="urls")


def test_coactivation_heatmap_is_square_with_feature_labels():
    matrix = pd.DataFrame([[1.0, 0.25], [0.25, 1.0]], index=[7, 3], columns=[7, 3])
    fig = viz.coactivation_heatmap(matrix)
    (heat,) = fig.data
    assert list(heat.x) == ["#7", "#3"] and list(heat.y) == ["#7", "#3"]
    np.testing.assert_allclose(heat.z, matrix.to_numpy())
    with pytest.raises(ValueError, match="square"):
        viz.coactivation_heatmap(matrix.iloc[:1])


def _logit_lens() -> pd.DataFrame:
    """Shaped like FeatureSummary.logit_lens."""
    return pd.DataFrame(
        {
            "direction": ["promoted", "promoted", "suppressed", "suppressed"],
            "rank": [2, 1, 1, 2],
            "token": [" the", "\n", "ing", " of"],
            "token_id": [1, 2, 3, 4],
            "logit": [1.5, 2.5, -3.0, -1.0],
        }
    )


def test_logit_lens_bar_two_panels_in_rank_order_with_visible_tokens():
    fig = viz.logit_lens_bar(_logit_lens())
    promoted, suppressed = fig.data
    assert list(promoted.x) == [2.5, 1.5] and list(suppressed.x) == [-3.0, -1.0]
    assert list(fig.layout.yaxis.ticktext) == ["⏎", "␣the"]
    assert list(fig.layout.yaxis2.ticktext) == ["ing", "␣of"]
    assert promoted.orientation == "h"
    assert "id %{customdata[1]}" in promoted.hovertemplate
    bad = _logit_lens().assign(direction="up")
    with pytest.raises(ValueError, match="unknown directions \\['up'\\]"):
        viz.logit_lens_bar(bad)


def test_logit_lens_bar_shortens_long_tokens_on_the_axis_but_not_in_the_hover():
    frame = _logit_lens()
    frame.loc[0, "token"] = " " + "=" * 64  # a real SmolLM2 vocabulary entry
    fig = viz.logit_lens_bar(frame)
    label = fig.layout.yaxis.ticktext[1]
    assert len(label) == style.AXIS_TOKEN_CHARS and label.startswith("␣===") and label.endswith("…")
    assert fig.data[0].customdata[1][0] == "␣" + "=" * 64
