"""saelab.viz.layers: coverage, specialist heatmap and specialist counts across layers, on
frames shaped like saelab.analysis.LayerComparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import viz
from tests.viz._helpers import SAES


def test_coverage_by_layer_shows_rank_one_coverage_per_sae():
    frequent_long = pd.DataFrame(  # shaped like LayerComparison.frequent
        {
            "sae": ["L5", "L5", "L10", "L10", "L15"],
            "rank": [1, 2, 1, 2, 1],
            "feature": [3, 4, 8, 9, 100],
            "frequency": [0.51, 0.4, 0.46, 0.2, 0.3],
        }
    )
    fig = viz.coverage_by_layer(frequent_long)
    (bar,) = fig.data
    assert list(bar.x) == ["L5", "L10", "L15"]
    assert list(bar.y) == [0.51, 0.46, 0.3]
    assert list(bar.customdata) == [3, 8, 100]
    assert bar.text[0] == "#3<br>51%"
    assert fig.layout.yaxis.tickformat == ".0%"


def test_specialist_heatmap_puts_categories_on_rows_and_saes_on_columns():
    scores = pd.DataFrame(  # shaped like LayerComparison.scores (category × sae)
        [[1, 6], [8, 7], [0, 2]], index=["python", "math", "conversational"], columns=["L5", "L10"]
    )
    (heat,) = viz.specialist_heatmap(scores).data
    np.testing.assert_array_equal(np.asarray(heat.z), scores.to_numpy())
    assert list(heat.x) == ["L5", "L10"]
    assert list(heat.y) == ["python", "math", "conversational"]
    assert heat.texttemplate == "%{z:.4~g}"
    with pytest.raises(ValueError, match="NaN"):
        viz.specialist_heatmap(scores.astype(float).where(scores > 0))


def test_specialist_count_by_layer_has_dashed_target_line():
    counts = pd.Series([5, 6, 7, 7], index=SAES, name="n_specialist_categories")
    fig = viz.specialist_count_by_layer(counts, n_categories=7)
    line, target = fig.data
    assert list(line.x) == SAES and list(line.y) == [5, 6, 7, 7]
    assert list(line.text) == ["5/7", "6/7", "7/7", "7/7"]
    assert list(target.y) == [7, 7, 7, 7]
    assert target.line.dash == "dash" and target.name == "all categories (7)"
    with pytest.raises(ValueError, match="n_categories=7"):
        viz.specialist_count_by_layer(pd.Series([8], index=["L5"]), 7)
    with pytest.raises(ValueError, match="positive integer"):
        viz.specialist_count_by_layer(counts, 0)
