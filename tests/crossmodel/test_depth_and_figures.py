"""Specialists lined up by relative depth, the explainability table, the computed sentences and
the two figures, on small frames whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import analysis, viz
from saelab.crossmodel import (
    CrossModelMatches,
    explainability_table,
    explanation_sentence,
    matching_sentences,
    specialist_sentences,
    specialist_summary,
    specialists_by_depth,
)


def _comparison(seed: int, planted: int) -> analysis.LayerComparison:
    """Pooled activations of 2 hooks on 24 texts of 2 categories; feature ``planted`` fires on 'a' only."""
    rng = np.random.default_rng(seed)
    labels = ["a"] * 12 + ["b"] * 12
    pooled = {}
    for hook in ("blocks.2.hook_resid_pre", "blocks.4.hook_resid_pre"):
        x = rng.random((24, 16)) * (rng.random((24, 16)) < 0.3)
        x[:12, planted] = 5 + rng.random(12)
        x[12:, planted] = 0
        pooled[hook] = x
    return analysis.compare_layers(pooled, labels, n_permutations=2_000)


def test_specialists_line_up_on_relative_depth() -> None:
    comparisons = {"m1": _comparison(0, 3), "m2": _comparison(1, 7)}
    depths = {"m1": {"blocks.2.hook_resid_pre": 0.25, "blocks.4.hook_resid_pre": 0.5},
              "m2": {"blocks.2.hook_resid_pre": 0.4, "blocks.4.hook_resid_pre": 0.8}}  # fmt: skip
    frame = specialists_by_depth(comparisons, depths)
    assert len(frame) == 2 * 2 * 2  # models x hooks x categories
    best_a = frame[frame["category"] == "a"].set_index(["model", "depth"])["feature"]
    assert best_a.to_dict() == {("m1", 0.25): 3, ("m1", 0.5): 3, ("m2", 0.4): 7, ("m2", 0.8): 7}
    assert frame[frame["category"] == "a"]["auroc"].eq(1.0).all()
    summary = specialist_summary(frame)
    assert summary["n_categories"].eq(2).all() and summary["n_specialist_categories"].ge(1).all()
    assert "m1: categories with a significant specialist by depth 0.25:" in specialist_sentences(summary)[0]
    fig = viz.specialists_by_depth_figure(frame)
    assert {t.name for t in fig.data} == {"m1", "m2"} and len(fig.data) == 4
    with pytest.raises(ValueError, match="no depth given"):
        specialists_by_depth(comparisons, {"m1": {}, "m2": depths["m2"]})


def _grid() -> pd.DataFrame:
    rows = []
    for i, ha in enumerate(("blocks.2.hook_resid_pre", "blocks.4.hook_resid_pre")):
        for j, hb in enumerate(("blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre")):
            rows.append({"hook_a": ha, "hook_b": hb, "depth_a": 0.25 * (i + 1), "depth_b": 0.25 * (j + 1),
                         "matched_share_active": 0.4 if i == j else 0.1, "null_rate": 0.01})  # fmt: skip
    return pd.DataFrame(rows)


def test_match_sentences_and_heatmap_read_the_grid() -> None:
    found = CrossModelMatches(_grid(), {}, "m1", "m2")
    first, second, third = matching_sentences(found)
    assert "40.0% of active features" in first and "null passes 1.0%" in first
    assert second.startswith("4 of 4 depth pairs have a matched share above their null rate (smallest margin +9.0%)")
    assert "closest relative depth the mean share is 40.0%; at other depth pairs 10.0%" in third
    fig = viz.match_share_heatmap(found.grid, model_a="m1", model_b="m2")
    assert fig.data[0].z.shape == (2, 2) and "null 1.0%" in fig.data[0].text[0][0]
    with pytest.raises(ValueError):
        viz.match_share_heatmap(found.grid.drop(columns=["null_rate"]))
    words = _grid().assign(word_retained=[0.9, 0.8, 0.7, 0.6], matched_share_beyond_words=[0.05, 0.0, 0.1, 0.15])
    fourth = matching_sentences(CrossModelMatches(words, {}, "m1", "m2"))[3]
    assert "keep a median 60%-90% of their correlation" in fourth
    assert "0.0%-15.0% of m1's active features" in fourth and "(10.0% on average at the closest depth)" in fourth
    assert "null 1.0%<br>context 5.0%" in viz.match_share_heatmap(words).data[0].text[0][0]


def test_explainability_compares_margins_with_their_intervals() -> None:
    records = {}
    rng = np.random.default_rng(0)
    for model, shift in (("m1", 0.5), ("m2", 0.0)):
        n = 20
        records[model] = pd.DataFrame({
            "feature": range(n), "explainer": "top_tokens", "explanation": "x",
            "score_simulation": shift + 0.05 * rng.standard_normal(n),
            "shuffled_simulation": 0.05 * rng.standard_normal(n),
            "all_negative_simulation": 0.0,
        })  # fmt: skip
    table = explainability_table(records)
    assert list(table["model"]) == ["m1", "m2"]
    sentence = explanation_sentence(table)
    assert "m1 is more explainable, the intervals do not overlap" in sentence
