"""The methods figure: one marker per (category, method), filled where the method passed."""

from __future__ import annotations

import pandas as pd
import pytest

from saelab.viz.steering_methods import steering_methods_figure


def _table() -> pd.DataFrame:
    rows = []
    for category, gains in (("python", (0.4, 0.6, 0.01, 0.0)), ("math", (0.2, -0.1, 0.0, 0.02))):
        for method, gain in zip(("sae", "diffmean", "prompting", "random"), gains, strict=True):
            rows.append({"category": category, "method": method, "arm": f"{method} arm", "gain": gain,
                         "gain_lo": gain - 0.1, "gain_hi": gain + 0.1, "perplexity_ratio": 1.2,
                         "distinct_ratio": 0.9, "passed": gain - 0.1 > 0})  # fmt: skip
        rows.append({"category": category, "method": "none", "arm": "none", "gain": 0.0, "gain_lo": 0.0,
                     "gain_hi": 0.0, "perplexity_ratio": 1.0, "distinct_ratio": 1.0, "passed": False})  # fmt: skip
    return pd.DataFrame(rows)


def test_one_trace_per_method_and_no_trace_for_no_edit():
    fig = steering_methods_figure(_table())
    assert [t.name for t in fig.data] == ["SAE feature", "DiffMean", "prompting", "random feature"]
    sae = fig.data[0]
    assert list(sae.x) == [0.4, 0.2]
    # Filled where passed (python's SAE gain CI is above 0), white where not.
    assert list(sae.marker.color) == ["#0072B2", "#0072B2"]
    assert list(fig.data[2].marker.color) == ["white", "white"]
    assert list(fig.layout.yaxis.ticktext) == ["python", "math"]


def test_methods_of_one_category_sit_on_separate_rows_around_it():
    fig = steering_methods_figure(_table())
    ys = [t.y[0] for t in fig.data]
    assert ys == sorted(ys) and min(ys) > -0.5 and max(ys) < 0.5


def test_a_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="distinct_ratio"):
        steering_methods_figure(_table().drop(columns="distinct_ratio"))
