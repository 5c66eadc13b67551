"""saelab.viz.charts: the generic grouped bar chart."""

from __future__ import annotations

import pandas as pd
import pytest

from saelab import viz


def test_grouped_bar_one_trace_per_group_in_order():
    frame = pd.DataFrame(
        {
            "category": ["math", "urls", "math", "urls"],
            "auroc": [0.9, 0.8, 0.6, 0.55],
            "pooling": ["masked", "masked", "naive", "naive"],
        }
    )
    fig = viz.grouped_bar(frame, "category", "auroc", "pooling", title="Best AUROC")
    assert [t.name for t in fig.data] == ["masked", "naive"]
    assert list(fig.data[1].y) == [0.6, 0.55] and list(fig.data[0].x) == ["math", "urls"]
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError, match="lacks columns \\['q_value'\\]"):
        viz.grouped_bar(frame, "category", "q_value", title="x")
