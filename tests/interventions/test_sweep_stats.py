"""The sweep's statistics on planted score tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab.interventions.sweep import SweepConfig, split_prompts
from saelab.interventions.sweep_stats import BASELINE, arm_curve, bootstrap_mean_ci, choose_arm, held_out_summary

CONFIG = SweepConfig(n_bootstrap=500)


def _scores(arms: dict, prompts=range(6), split="select") -> pd.DataFrame:
    rows = []
    for (feature, strength), (concept, ppl) in arms.items():
        for p in prompts:
            rows.append({"prompt_index": p, "split": split, "sample": 0, "feature": feature, "strength": strength,
                         "text": "x", "concept": concept + 0.01 * p, "perplexity": ppl, "relevance": 0.5})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_best_concept_within_the_perplexity_bound_is_chosen():
    scores = _scores({BASELINE: (0.1, 10.0), (5, 2.0): (0.3, 15.0), (5, 4.0): (0.9, 25.0), (7, 2.0): (0.5, 19.0)})
    curve = arm_curve(scores, CONFIG)
    assert len(curve) == 4
    # (5, 4.0) has the highest concept but 2.5x the perplexity: (7, 2.0) wins.
    assert choose_arm(curve, 2.0) == ((7, 2.0), True)
    assert choose_arm(curve, 3.0) == ((5, 4.0), True)
    row = curve[(curve.feature == 7)].iloc[0]
    assert row.perplexity == pytest.approx(19.0) and row.concept_lo <= row.concept <= row.concept_hi


def test_when_nothing_qualifies_the_weakest_strength_is_taken_and_flagged():
    scores = _scores({BASELINE: (0.1, 10.0), (5, 2.0): (0.3, 50.0), (5, 4.0): (0.9, 90.0), (7, 2.0): (0.2, 40.0)})
    assert choose_arm(arm_curve(scores, CONFIG), 2.0) == ((5, 2.0), False)


def test_held_out_gain_is_paired_by_prompt_with_a_bootstrap_interval():
    report = _scores({BASELINE: (0.1, 10.0), (7, 2.0): (0.4, 12.0)}, prompts=range(8), split="report")
    held = held_out_summary(report, (7, 2.0), True, CONFIG)
    assert held.gain == pytest.approx(0.3) and held.gain_lo == pytest.approx(0.3) and held.passed
    assert held.perplexity_ratio == pytest.approx(1.2) and held.n_prompts == 8
    assert held.as_row()["passed"] is True
    worse = _scores({BASELINE: (0.1, 10.0), (7, 2.0): (0.4, 30.0)}, prompts=range(8), split="report")
    assert not held_out_summary(worse, (7, 2.0), True, CONFIG).passed  # 3x perplexity


def test_bootstrap_interval_covers_the_mean_and_is_nan_when_undefined():
    values = np.random.default_rng(0).normal(1.0, 1.0, size=40)
    lo, hi = bootstrap_mean_ci(values, 2000, 0.95, 0)
    assert lo < values.mean() < hi and hi - lo < 1.0
    assert all(np.isnan(bootstrap_mean_ci(np.array([1.0]), 100, 0.95, 0)))


def test_prompts_split_in_halves_and_the_config_refuses_nonsense():
    split = split_prompts(7, seed=1)
    assert (split == "select").sum() == 3 and (split == "report").sum() == 4
    with pytest.raises(ValueError, match="at least 2 prompts"):
        split_prompts(1, 0)
    for bad in ({"strengths": ()}, {"strengths": (0.0,)}, {"strengths": (float("nan"),)}, {"mode": "x"},
                {"max_perplexity_ratio": 1.0}, {"report_samples": 0}, {"select_perplexity_ratio": 2.5}):  # fmt: skip
        with pytest.raises(ValueError):
            SweepConfig(**bad)
