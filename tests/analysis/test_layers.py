"""saelab.analysis.layers: comparing SAEs at several layers on planted-truth data, and the
trends across depth with the words that describe them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import analysis
from saelab.analysis import layers, table_cache
from saelab.analysis.layers import LayerComparison
from tests.analysis._helpers import CONSTANT, N_CAT


def test_compare_layers(synthetic):
    x, labels, codes, names, _ = synthetic
    rng = np.random.default_rng(1)
    noise = np.where(rng.random((len(labels), 50)) < 0.1, rng.lognormal(0, 1, (len(labels), 50)), 0.0)
    result = analysis.compare_layers({"L6": noise, "L8": x}, labels, n_permutations=20_000, n_bootstrap=50)
    summary = result.summary
    assert summary.index.tolist() == ["L6", "L8"] and summary.index.name == "sae"
    assert list(summary.columns) == [
        "strongest_feature", "strongest_value", "frequent_feature", "frequent_coverage",
        "selective_feature", "selective_value", "n_specialist_categories", "n_categories",
        "best_category", "best_category_score",
    ]  # fmt: skip
    assert summary.loc["L8", "n_specialist_categories"] == N_CAT and summary.loc["L6", "n_specialist_categories"] == 0
    assert summary.loc["L8", "frequent_feature"] == CONSTANT and summary.loc["L8", "frequent_coverage"] == 1.0
    assert summary.loc["L8", "strongest_value"] == pytest.approx(x.max())
    assert result.counts.to_dict() == {"L6": 0, "L8": N_CAT}
    assert result.scores.shape == (N_CAT, 2) and result.scores.columns.tolist() == ["L6", "L8"]
    assert result.scores.index.tolist() == names
    assert list(result.specialists.columns[:2]) == ["sae", "category"] and len(result.specialists) == 2 * N_CAT * 5
    assert list(result.strongest.columns) == ["sae", "rank", "feature", "max_activation"]
    assert list(result.frequent.columns) == ["sae", "rank", "feature", "frequency"]
    assert result.frequent.groupby("sae").size().to_dict() == {"L6": 5, "L8": 5}
    with pytest.raises(ValueError, match="labels has 2 entries"):
        analysis.compare_layers({"L6": noise}, labels[:2])


def _comparison_for_trends() -> LayerComparison:
    # Given out of depth order on purpose: layer 28 first.
    names = ["blocks.28.hook_resid_pre", "blocks.15.hook_resid_pre", "blocks.20.hook_resid_pre"]
    summary = pd.DataFrame(
        {
            "n_specialist_categories": [7, 4, 5],  # 4 -> 5 -> 7 with depth: rises
            "frequent_coverage": [0.3, 0.6, 0.7],  # 0.6 -> 0.7 -> 0.3: falls overall
            "strongest_value": [2.0, 2.0, 5.0],  # 2 -> 5 -> 2: flat
        },
        index=pd.Index(names, name="sae"),
    )
    specialists = pd.DataFrame(
        {
            "sae": [n for n in names for _ in range(4)],
            "category": ["a", "a", "b", "b"] * 3,
            "auroc": [0.9, 0.7, 0.8, 0.6, 0.7, 0.5, 0.6, 0.5, 0.8, 0.6, 0.7, 0.6],
        }
    )
    empty = pd.DataFrame()
    return LayerComparison(summary, specialists, empty, pd.Series(dtype=int), empty, empty)


def test_layer_trends_orders_by_depth_and_names_the_direction():
    trends = analysis.layer_trends(_comparison_for_trends()).set_index("metric")
    assert (trends.first_sae == "blocks.15.hook_resid_pre").all()
    assert (trends.last_sae == "blocks.28.hook_resid_pre").all()
    assert trends.loc["n_specialist_categories", "trend"] == "rises"
    assert trends.loc["n_specialist_categories", "spearman"] == pytest.approx(1.0)
    assert trends.loc["frequent_coverage", "trend"] == "falls overall"
    assert trends.loc["frequent_coverage", "change"] == pytest.approx(-0.3)
    assert trends.loc["strongest_value", "trend"] == "stays flat"
    # Mean over categories of the best AUROC: layer 15 (0.7+0.6)/2, 20 (0.8+0.7)/2, 28 (0.9+0.8)/2.
    assert trends.loc["mean_best_auroc", "first"] == pytest.approx(0.65)
    assert trends.loc["mean_best_auroc", "last"] == pytest.approx(0.85)
    assert trends.loc["mean_best_auroc", "trend"] == "rises"
    sentences = analysis.describe_trends(trends.reset_index())
    assert sentences[0].startswith(
        "The number of categories with at least one significant specialist rises: 4 at blocks.15"
    )


def test_trend_word_calls_a_tiny_change_about_flat():
    assert layers._trend_word(np.array([1.0, 1.0, 0.99])) == "stays about flat"
    assert layers._trend_word(np.array([1.0, 0.9, 0.95])) == "falls overall"
    assert layers._trend_word(np.array([0.0, 0.001])) == "rises"  # no scale to be relative to but itself


def test_layer_trends_uses_given_depth_and_checks_it():
    comparison = _comparison_for_trends()
    depth = {"blocks.28.hook_resid_pre": 0, "blocks.15.hook_resid_pre": 1, "blocks.20.hook_resid_pre": 2}
    trends = analysis.layer_trends(comparison, depth).set_index("metric")
    assert trends.loc["n_specialist_categories", "first"] == 7
    with pytest.raises(ValueError, match="no entry"):
        analysis.layer_trends(comparison, {"blocks.28.hook_resid_pre": 0})


def test_compare_layers_reads_back_the_same_tests_and_only_those(synthetic, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    x, labels, *_ = synthetic
    settings = dict(n_permutations=5_000, n_bootstrap=20)
    first = analysis.compare_layers({"L8": x}, labels, **settings)
    (entry,) = (tmp_path / "specialists").iterdir()

    def fail(*args, **kwargs):
        raise AssertionError("the permutation tests ran again")

    monkeypatch.setattr(table_cache, "specialists", fail)
    again = analysis.compare_layers({"L8": x}, labels, **settings, seed=0)  # a default spelt out: the same table
    pd.testing.assert_frame_equal(again.specialists, first.specialists)
    for pooled, labelled, extra in (({"L8": x * 2}, labels, {}), ({"L8": x}, labels, {"seed": 1}),
                                    ({"L8": x}, list(reversed(labels)), {})):  # fmt: skip
        with pytest.raises(AssertionError, match="ran again"):  # other activations, settings or labels
            analysis.compare_layers(pooled, labelled, **settings, **extra)
    monkeypatch.undo()
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    entry.write_bytes(b"damaged")
    pd.testing.assert_frame_equal(analysis.compare_layers({"L8": x}, labels, **settings).specialists, first.specialists)
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("SAELAB_CACHE", str(fresh))
    analysis.compare_layers({"L8": x}, labels, cache=False, **settings)
    assert not fresh.exists()
