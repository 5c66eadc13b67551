"""saelab.viz.autointerp: scores drawn beside their controls, decompositions in the paper's
order, and explanations escaped in the HTML table. Hand-made frames, no model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.viz.autointerp import explanation_table_html, replication_figure, score_distributions


def _records() -> pd.DataFrame:
    rows = []
    for explainer, base in (("top_tokens", 0.6), ("ngram_pattern", 0.4)):
        for feature in range(4):
            rows.append({"feature": feature, "decomposition": "sae", "explainer": explainer,
                         "explanation": f"<b>{explainer}</b> & {feature}",
                         "score_simulation": base + 0.05 * feature, "shuffled_simulation": 0.05 * feature,
                         "all_negative_simulation": np.nan, "score_embedding": 0.7, "shuffled_embedding": 0.5,
                         "all_negative_embedding": 0.5})  # fmt: skip
    rows[0]["score_simulation"] = np.nan  # an unscored feature is left out, not drawn at 0
    return pd.DataFrame(rows)


def test_score_distributions_pairs_each_metric_with_its_control():
    fig = score_distributions(_records())
    names = [(t.name, t.xaxis) for t in fig.data]
    assert names == [("explanation", "x"), ("shuffled control", "x"), ("explanation", "x2"), ("shuffled control", "x2")]
    assert len(fig.data[0].y) == 7 and not np.isnan(np.asarray(fig.data[0].y, float)).any()
    assert set(fig.data[0].x) == {"top_tokens", "ngram_pattern"}
    assert fig.layout.boxmode == "group"
    # The all-negative line is drawn where the baseline is known (embedding), not for NaN (simulation).
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].y0 == pytest.approx(0.5) and lines[0].yref.startswith("y2")


def test_score_distributions_takes_chosen_metrics_and_rejects_unknown_ones():
    assert len(score_distributions(_records(), ["embedding"]).data) == 2
    with pytest.raises(ValueError, match="score_fuzzing"):
        score_distributions(_records(), ["fuzzing"])


def _table() -> pd.DataFrame:
    rows = [
        {
            "decomposition": d,
            "explainer": "top_tokens",
            "metric": "simulation",
            "n": 5,
            "n_unscored": 0,
            "mean": m,
            "low": m - 0.1,
            "high": m + 0.1,
            "mean_shuffled": 0.0,
            "margin": m,
            "margin_low": 0,
            "margin_high": 1,
        }  # fmt: skip
        for d, m in (("random", 0.1), ("pca", 0.3), ("sae", 0.5), ("neurons", 0.2), ("ica", 0.4))
    ]
    return pd.DataFrame(rows)


def test_replication_figure_orders_decompositions_as_the_paper():
    fig = replication_figure(_table(), "top_tokens", "simulation")
    assert [t.name for t in fig.data] == ["explanation (mean, 95% CI)", "shuffled control (mean)"]
    assert list(fig.data[0].x) == ["sae", "ica", "pca", "neurons", "random"]
    assert list(fig.data[0].y) == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    assert list(fig.data[0].error_y.array) == pytest.approx([0.1] * 5)
    with pytest.raises(ValueError, match="no rows"):
        replication_figure(_table(), "llm", "simulation")


def test_explanation_table_escapes_explanations_and_shows_controls():
    page = explanation_table_html(_records(), n=2)
    assert "<b>top_tokens</b>" not in page and "&lt;b&gt;top_tokens&lt;/b&gt; &amp; 1" in page
    assert page.count("<tr>") == 3  # header and two rows
    assert "n/a" in page and "0.65 / <span" in page  # the unscored feature, then feature 1 beside its control


def test_explanation_table_highlights_each_features_top_context():
    context = Context(("a", " <cat>"), (1, 2), (0.0, 2.0), (0, 0))
    examples = {0: FeatureExamples(0, "sae", 0.0, 0.1, 2.0, explain=(context,))}
    page = explanation_table_html(_records(), examples, n=2)
    assert page.count('class="saelab-hl"') == 1 and "&lt;cat&gt;" in page and "<cat>" not in page
