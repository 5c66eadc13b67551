"""saelab.viz.steering: the concept-vs-fluency sweep and the per-category summary, on hand-made
tables whose every drawn number is known."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from saelab._util import browser
from saelab.viz import export
from saelab.viz.steering import (
    PASSED_COLORS,
    PERPLEXITY_COLOR,
    SPLIT_COLORS,
    steering_summary_figure,
    steering_sweep_figure,
)
from saelab.viz.style import category_color


def _sweep(strengths=(0.0, 2.0, 4.0, 8.0), splits=("select", "report"), category: str | None = None) -> pd.DataFrame:
    rows = []
    for k, split in enumerate(splits):
        for s in strengths:
            concept = 0.1 + 0.1 * s + 0.01 * k
            rows.append(
                {
                    "strength": s,
                    "concept": concept,
                    "concept_lo": concept - 0.05,
                    "concept_hi": concept + 0.05,
                    "perplexity": 10 * 1.5**s,
                    "relevance": -2 - 0.1 * s,
                    "split": split,
                    "chosen": s == 4.0,
                    **({"category": category} if category else {}),
                }
            )
    return pd.DataFrame(rows)


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "category": ["math", "python", "urls"],
            "feature": [3, 5, 11],
            "strength": [4.0, 2.0, 6.0],
            "concept_baseline": [0.10, 0.20, 0.05],
            "concept_steered": [0.50, 0.25, 0.45],
            "concept_gain": [0.40, 0.05, 0.40],
            "gain_lo": [0.30, -0.02, 0.20],
            "gain_hi": [0.50, 0.10, 0.55],
            "perplexity_ratio": [1.4, 1.1, 3.2],
            "passed": [True, False, False],
        }
    )


# -- the sweep ------------------------------------------------------------------------


def test_sweep_draws_band_concept_and_perplexity_per_split_sorted_by_strength():
    frame = _sweep().sample(frac=1.0, random_state=0)  # rows in any order
    fig = steering_sweep_figure(frame)
    assert [t.name for t in fig.data] == [
        "select · 95% CI", "concept · select", "perplexity · select",
        "report · 95% CI", "concept · report", "perplexity · report",
    ]  # fmt: skip
    band, concept, perplexity = fig.data[:3]
    x = [0.0, 2.0, 4.0, 8.0]
    np.testing.assert_allclose(concept.x, x)
    np.testing.assert_allclose(concept.y, [0.1 + 0.1 * s for s in x])
    # The band is a closed polygon: the upper bound forwards, the lower bound back.
    np.testing.assert_allclose(band.x, x + x[::-1])
    np.testing.assert_allclose(band.y, [0.15 + 0.1 * s for s in x] + [0.05 + 0.1 * s for s in x[::-1]])
    assert band.fill == "toself" and not band.showlegend
    np.testing.assert_allclose(perplexity.y, [10 * 1.5**s for s in x])
    assert perplexity.yaxis == "y2" and concept.yaxis in (None, "y")
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.overlaying == "y"
    assert concept.line.color == SPLIT_COLORS["select"] and fig.data[4].line.color == SPLIT_COLORS["report"]
    # Relevance and the CI ride along for the hover.
    np.testing.assert_allclose(concept.customdata[:, 3], [-2 - 0.1 * s for s in x])


def test_sweep_marks_the_chosen_strength():
    fig = steering_sweep_figure(_sweep())
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 4.0
    assert fig.layout.annotations[0].text == "chosen 4"
    assert not steering_sweep_figure(_sweep().drop(columns="chosen")).layout.shapes


def test_sweep_names_its_one_category_and_colours_several_by_category():
    one = steering_sweep_figure(_sweep(category="math"))
    assert one.layout.title.text.endswith("· math")
    two = steering_sweep_figure(pd.concat([_sweep(category="math"), _sweep(category="python")]))
    concepts = [t for t in two.data if t.name.startswith("concept")]
    assert [t.name for t in concepts] == [
        "concept · math · select", "concept · math · report",
        "concept · python · select", "concept · python · report",
    ]  # fmt: skip
    assert [t.line.color for t in concepts] == [category_color("math")] * 2 + [category_color("python")] * 2
    assert [t.line.dash for t in concepts] == ["solid", "dash", "solid", "dash"]
    assert steering_sweep_figure(_sweep(), title="mine").layout.title.text == "mine"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="perplexity"), r"lacks columns \['perplexity'\]"),
        (lambda f: f.assign(concept_lo=f["concept"] + 0.1), "concept_lo <= concept <= concept_hi"),
        (lambda f: f.assign(perplexity=0.0), "must be > 0"),
        (lambda f: f.assign(relevance=np.nan), "NaN or inf"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "repeated rows"),
        (lambda f: f.iloc[:0], "is empty"),
    ],
)
def test_sweep_rejects_bad_tables_clearly(edit, message):
    with pytest.raises(ValueError, match=message):
        steering_sweep_figure(edit(_sweep()))


# -- the summary ----------------------------------------------------------------------


def test_summary_draws_gain_with_ci_whiskers_coloured_by_passed():
    table = _summary()
    fig = steering_summary_figure(table)
    passed, failed = fig.data
    assert (passed.name, failed.name) == ("passed", "not passed")
    assert list(passed.y) == ["math · #3 × 4"] and list(failed.y) == ["python · #5 × 2", "urls · #11 × 6"]
    np.testing.assert_allclose(failed.x, [0.05, 0.40])
    # Whiskers reach exactly the CI: plus (hi - gain), minus (gain - lo).
    np.testing.assert_allclose(failed.error_x.array, [0.05, 0.15])
    np.testing.assert_allclose(failed.error_x.arrayminus, [0.07, 0.20])
    assert passed.marker.color == PASSED_COLORS[True] and failed.marker.color == PASSED_COLORS[False]
    # Rows top to bottom in the table's order, each with its perplexity ratio beside its whisker.
    assert list(fig.layout.yaxis.categoryarray) == ["math · #3 × 4", "python · #5 × 2", "urls · #11 × 6"]
    assert fig.layout.yaxis.autorange == "reversed"
    notes = [(a.text, a.x, a.y) for a in fig.layout.annotations]
    assert notes == [("ppl ×1.40", 0.5, "math · #3 × 4"), ("ppl ×1.10", 0.1, "python · #5 × 2"),
                     ("ppl ×3.20", 0.55, "urls · #11 × 6")]  # fmt: skip
    assert fig.layout.shapes[0].x0 == 0  # the no-gain line


def test_summary_with_every_row_passed_draws_one_trace():
    fig = steering_summary_figure(_summary().assign(passed=True))
    assert [t.name for t in fig.data] == ["passed"] and len(fig.data[0].x) == 3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="gain_hi"), r"lacks columns \['gain_hi'\]"),
        (lambda t: t.assign(gain_lo=t["concept_gain"] + 0.01), "gain_lo <= concept_gain <= gain_hi"),
        (lambda t: t.assign(passed=["yes", "no", "no"]), "booleans"),
        (lambda t: t.assign(perplexity_ratio=-1.0), "must be > 0"),
        (lambda t: t.assign(category="math", feature=3, strength=4.0), "repeated rows"),
    ],
)
def test_summary_rejects_bad_tables_clearly(edit, message):
    with pytest.raises(ValueError, match=message):
        steering_summary_figure(edit(_summary()))


def test_rows_without_a_ci_draw_no_band_and_no_whisker():
    sweep = _sweep()
    sweep.loc[sweep["strength"] == 8.0, ["concept_lo", "concept_hi"]] = np.nan
    band = steering_sweep_figure(sweep).data[0]
    np.testing.assert_allclose(band.x, [0.0, 2.0, 4.0, 4.0, 2.0, 0.0])
    table = _summary()
    table.loc[1, ["gain_lo", "gain_hi"]] = np.nan
    fig = steering_summary_figure(table)
    np.testing.assert_allclose(fig.data[1].error_x.array, [0.0, 0.15])
    assert fig.layout.annotations[1].x == 0.05  # beside the point itself
    with pytest.raises(ValueError, match="contains inf"):
        steering_summary_figure(table.assign(gain_hi=np.inf))


def test_a_sweep_without_splits_is_one_series():
    fig = steering_sweep_figure(_sweep(splits=("select",)).drop(columns="split"))
    assert [t.name for t in fig.data] == ["95% CI", "concept", "perplexity"]
    assert fig.data[1].hovertemplate.startswith("strength ")
    assert fig.data[2].line.color == PERPLEXITY_COLOR != fig.data[1].line.color


def test_the_summary_takes_heldouts_name_for_the_gain():
    fig = steering_summary_figure(_summary().rename(columns={"concept_gain": "gain"}))
    np.testing.assert_allclose(fig.data[1].x, [0.05, 0.40])


@pytest.mark.parametrize("n_bootstrap", [200, 0])
def test_the_sweeps_own_tables_draw(n_bootstrap):
    """The tables saelab.interventions.sweep makes, from planted scores, go straight in."""
    from saelab.interventions import sweep
    from saelab.interventions.sweep_stats import BASELINE, arm_curve, choose_arm, held_out_summary

    rng = np.random.default_rng(0)
    arms = [BASELINE, (5, 2.0), (5, 4.0), (5, 8.0), (9, 4.0)]
    scores = pd.DataFrame(
        [
            {"prompt_index": p, "split": "select" if p < 4 else "report", "sample": 0, "feature": f, "strength": s,
             "concept": min(1.0, 0.1 * s + 0.05 * rng.random()), "perplexity": 10 * 1.1**s + rng.random(),
             "relevance": -2 - 0.1 * s}
            for p in range(8) for f, s in arms
        ]
    )  # fmt: skip
    config = sweep.SweepConfig(strengths=(2.0, 4.0, 8.0), n_bootstrap=n_bootstrap)
    curve = arm_curve(scores[scores["split"] == "select"], config)
    chosen, qualified = choose_arm(curve, config.max_perplexity_ratio)
    held = held_out_summary(scores[scores["split"] == "report"], chosen, qualified, config)
    curve["chosen"] = (curve["feature"] == chosen[0]) & (curve["strength"] == chosen[1])
    result = sweep.SweepResult("math", [5, 9], "add", scores, curve, held, config)
    by_strength = result.by_strength(5)
    fig = steering_sweep_figure(by_strength, title="#5 · math")
    np.testing.assert_allclose(fig.data[1].x, [0.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(fig.data[1].y, by_strength["concept"])
    assert held.feature == 5 and [s.x0 for s in fig.layout.shapes] == [held.strength]
    summary = steering_summary_figure(sweep.steering_table([result]))
    np.testing.assert_allclose(summary.data[0].x, [held.gain])
    assert summary.data[0].name == ("passed" if held.passed else "not passed")


def test_both_figures_export_to_svg(tmp_path):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium-based browser found: " + browser.INSTALL_HINT)
    start = time.perf_counter()
    sweep, summary = export.figures_to_svg([steering_sweep_figure(_sweep()), steering_summary_figure(_summary())])
    assert "concept probe probability" in sweep and "chosen 4" in sweep
    assert "ppl ×1.40" in summary and "math · #3 × 4" in summary
    assert time.perf_counter() - start < 60
