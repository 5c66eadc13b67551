"""saelab.viz.emergence: the feature-stability figure draws the per-step summary it is given,
with the null beside it, and marks each specialist's first significant step."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from saelab import viz
from saelab.evolution.emergence import Emergence, SpecialistEmergence

STEPS = [0, 10, 20]


def traces(fig) -> list[Any]:
    return cast(list[Any], list(fig.data))


def emergence() -> Emergence:
    per_step = pd.DataFrame({
        "step": STEPS, "threshold": [0.4, 0.42, 0.45], "null_rate": [0.01, 0.0, 0.02],
        "matched_share": [0.05, 0.4, 0.9], "appeared_share": [0.05, 0.45, 0.92], "stable_share": [0.0, 0.4, 0.9],
        "median": [0.3, 0.6, 0.95], "q25": [0.25, 0.5, 0.9], "q75": [0.35, 0.7, 0.98],
        "same_unit_median": [0.1, 0.5, 0.93],
    }).set_index("step")  # fmt: skip
    return Emergence(null_quantile=0.99, long=pd.DataFrame(), per_feature=pd.DataFrame(), per_step=per_step)


def specialists() -> SpecialistEmergence:
    long = pd.DataFrame({
        "category": ["python"] * 3 + ["math"] * 3, "feature": [4] * 3 + [9] * 3, "step": STEPS * 2,
        "auroc": [0.6, 0.9, 0.95, 0.5, 0.55, 0.6], "p_value": [0.3, 1e-4, 1e-4, 0.5, 0.4, 0.3],
        "q_value": [0.3, 1e-4, 1e-4, 0.5, 0.4, 0.3], "mean_in": 1.0, "mean_out": 0.5,
        "is_specialist": [False, True, True, False, False, False],
    })  # fmt: skip
    per_category = pd.DataFrame({"feature": [4, 9], "first_step": pd.array([10, None], dtype="Int64"),
                                 "stable_step": pd.array([10, None], dtype="Int64")},
                                index=pd.Index(["python", "math"], name="category"))  # fmt: skip
    return SpecialistEmergence(alpha=0.05, min_auroc=0.8, n_permutations=1000, long=long, per_category=per_category)


def test_stability_panels_draw_the_summary_beside_the_null():
    fig = viz.feature_stability_figure(emergence())
    by_name = {t.name: t for t in traces(fig)}
    assert list(by_name["best match (median)"].y) == [0.3, 0.6, 0.95]
    assert list(by_name["matched at this step"].y) == [0.05, 0.4, 0.9]
    assert list(by_name["null rate (chance matches)"].y) == [0.01, 0.0, 0.02]
    assert list(by_name["null threshold (99% of random)"].y) == [0.4, 0.42, 0.45]
    assert list(by_name["best match, interquartile range"].y) == [0.25, 0.5, 0.9]
    layout = cast(Any, fig.layout)
    assert layout.yaxis2.tickformat == ".0%" and layout.xaxis2.title.text == "training step"
    assert all(t.hovertemplate or t.hoverinfo == "skip" for t in traces(fig))


def test_specialists_are_marked_at_their_first_significant_step():
    fig = viz.feature_stability_figure(emergence(), specialists())
    markers = [t for t in traces(fig) if t.yaxis == "y3"]
    python = next(t for t in markers if t.name == "python · #4")
    assert list(python.marker.color) == ["white", "#0072B2", "#0072B2"]  # open, then filled when significant
    firsts = [t for t in markers if t.marker.symbol == "diamond" and t.x != (None,)]
    assert [(t.name, list(t.x)) for t in firsts] == [("python: first significant", [10])]  # math never is
    assert cast(Any, fig.layout).xaxis3.title.text == "training step"


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="feature_emergence"):
        viz.feature_stability_figure(SimpleNamespace(per_step=None))  # type: ignore[arg-type]
    broken = emergence()
    broken.per_step = broken.per_step.drop(columns="null_rate")
    with pytest.raises(ValueError, match="lacks columns"):
        viz.feature_stability_figure(broken)
    broken = emergence()
    broken.per_step.loc[10, "median"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        viz.feature_stability_figure(broken)
    with pytest.raises(ValueError, match="specialist_emergence"):
        viz.feature_stability_figure(emergence(), SimpleNamespace())  # type: ignore[arg-type]
