"""The choice rule of a steering comparison on hand-made per-prompt tables: the qualified arm
that moves the concept furthest, where qualifying bounds the perplexity ratio's CI upper end
and refuses degenerate (repetitive) text whatever its perplexity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from saelab.interventions.arms import NO_EDIT, Arm
from saelab.interventions.comparison_stats import Rule, arm_summary, choose, fluent, passed, per_prompt

HOOK = "blocks.2.hook_resid_pre"
N = 8
RULE = Rule(n_bootstrap=500)
BASE_CONCEPT, BASE_LOG_PPL, BASE_DISTINCT = 0.1, 2.0, 0.9
WOBBLE = np.linspace(-0.01, 0.01, N)  # a little spread per prompt, so CIs are narrow but not empty


def _arm(feature: int, strength: float) -> Arm:
    return Arm("sae", "", HOOK, feature, strength)


def _rows(arm, gain, log_ratio=0.0, distinct=BASE_DISTINCT, prompts=range(N)) -> pd.DataFrame:
    prompts = list(prompts)
    log_ratio = np.broadcast_to(np.asarray(log_ratio, dtype=float), (N,))[: len(prompts)]
    return pd.DataFrame({
        "arm": [arm] * len(prompts), "prompt_index": prompts,
        "concept": BASE_CONCEPT + gain + WOBBLE[: len(prompts)], "log_ppl": BASE_LOG_PPL + log_ratio,
        "relevance": 1.0, "distinct2": distinct,
    })  # fmt: skip


def _table(*arms: pd.DataFrame) -> pd.DataFrame:
    base = _rows(NO_EDIT, 0.0)
    base["concept"] = BASE_CONCEPT
    return pd.concat([base, *arms], ignore_index=True)


GOOD, STRONG, WEAK = _arm(1, 2.0), _arm(1, 8.0), _arm(2, 2.0)


def test_the_best_qualified_arm_is_chosen():
    table = _table(_rows(GOOD, 0.3, math.log(1.2)), _rows(STRONG, 0.6, math.log(3.0)), _rows(WEAK, 0.2))
    arm, qualified, summary = choose(table, [GOOD, STRONG, WEAK], NO_EDIT, RULE, direction=1)
    assert arm == GOOD and qualified
    assert summary["qualified"].tolist() == [True, False, True]
    assert summary["chosen"].tolist() == [True, False, False]
    assert summary.loc[0, "gain"] == pytest.approx(0.3) and summary.loc[1, "perplexity_ratio"] == pytest.approx(3.0)


def test_a_perplexity_ratio_whose_ci_reaches_past_the_bound_does_not_qualify():
    """Point estimate 1.87x, but two prompts in eight at 12x: the upper end is far above 2x."""
    risky = _arm(3, 4.0)
    table = _table(_rows(GOOD, 0.3), _rows(risky, 0.8, [0, 0, 0, 0, 0, 0, 2.5, 2.5]))
    summary = arm_summary(table, risky, NO_EDIT, RULE)
    assert summary["perplexity_ratio"] == pytest.approx(math.exp(0.625)) and summary["perplexity_ratio"] < 2
    assert summary["perplexity_ratio_hi"] > 2
    assert fluent(summary, RULE, upper=False) and not fluent(summary, RULE, upper=True)
    arm, qualified, _ = choose(table, [GOOD, risky], NO_EDIT, RULE, direction=1)
    assert arm == GOOD and qualified


def test_degenerate_text_does_not_qualify_whatever_its_perplexity():
    """The "= = = =" case: perplexity falls to 0.48x and the concept jumps, but distinct-2
    is a fifth of the baseline's."""
    loop, half = _arm(949, 8.0), _arm(4, 2.0)
    table = _table(_rows(GOOD, 0.3), _rows(loop, 0.7, math.log(0.48), distinct=0.2),
                   _rows(half, 0.5, distinct=BASE_DISTINCT / 2))  # fmt: skip
    summary = arm_summary(table, loop, NO_EDIT, RULE)
    assert summary["perplexity_ratio_hi"] < 1 and summary["distinct_ratio"] == pytest.approx(0.2 / 0.9)
    assert not fluent(summary, RULE, upper=True) and not fluent(summary, RULE, upper=False)
    arm, _, chosen = choose(table, [GOOD, loop, half], NO_EDIT, RULE, direction=1)
    assert chosen["qualified"].tolist() == [True, False, True]  # exactly half the baseline's still qualifies
    assert arm == half


def test_direction_minus_one_chooses_the_arm_that_lowers_the_concept_most():
    lower, lowest = _arm(1, -2.0), _arm(1, -8.0)
    table = _table(_rows(GOOD, 0.3), _rows(lower, -0.03), _rows(lowest, -0.08, math.log(1.5)))
    arm, qualified, _ = choose(table, [GOOD, lower, lowest], NO_EDIT, RULE, direction=-1)
    assert arm == lowest and qualified


def test_with_no_arm_qualified_the_gentlest_strength_is_returned_unqualified():
    table = _table(_rows(_arm(1, 2.0), 0.1, math.log(3)), _rows(_arm(2, 2.0), 0.3, math.log(3)),
                   _rows(_arm(1, 8.0), 0.9, math.log(5)))  # fmt: skip
    arm, qualified, summary = choose(table, [_arm(1, 2.0), _arm(2, 2.0), _arm(1, 8.0)], NO_EDIT, RULE, direction=1)
    assert arm == _arm(2, 2.0) and not qualified and not summary["qualified"].any()
    negative = _table(_rows(_arm(1, -2.0), -0.1, math.log(3)), _rows(_arm(1, -8.0), -0.5, math.log(5)))
    arm, qualified, _ = choose(negative, [_arm(1, -8.0), _arm(1, -2.0)], NO_EDIT, RULE, direction=-1)
    assert arm == _arm(1, -2.0) and not qualified


@pytest.mark.parametrize(
    ("change", "direction", "expected"),
    [
        ({}, 1, True),
        ({"gain_lo": 0.0}, 1, False),
        ({"gain_lo": -0.01}, 1, False),
        ({"gain_lo": float("nan")}, 1, False),
        ({"perplexity_ratio": 2.1}, 1, False),
        ({"perplexity_ratio_hi": 9.0}, 1, True),  # held out, the point ratio is the test
        ({"distinct_ratio": 0.4}, 1, False),
        ({"distinct_ratio": float("nan")}, 1, True),  # too short to judge is not degenerate
        ({}, -1, False),
        ({"gain_lo": -0.2, "gain_hi": -0.01}, -1, True),
        ({"gain_lo": -0.2, "gain_hi": 0.0}, -1, False),
    ],
)
def test_passing_needs_the_gain_ci_on_the_wanted_side_and_fluent_text(change, direction, expected):
    summary = {"gain_lo": 0.01, "gain_hi": 0.2, "perplexity_ratio": 1.5, "perplexity_ratio_hi": 1.9,
               "distinct_ratio": 0.9, **change}  # fmt: skip
    assert passed(summary, RULE, direction) is expected


def test_an_arm_is_compared_with_the_baseline_on_the_prompts_both_ran():
    arm = _arm(1, 2.0)
    table = _table(_rows(arm, 0.2, np.log(np.arange(1, N + 1)), prompts=range(2, N)))
    summary = arm_summary(table, arm, NO_EDIT, RULE)
    assert summary["n_prompts"] == N - 2
    assert summary["gain"] == pytest.approx(0.2 + WOBBLE[: N - 2].mean())
    assert summary["perplexity_ratio"] == pytest.approx(math.exp(np.log(np.arange(1, N - 1)).mean()))  # geometric
    assert summary["gain_lo"] < summary["gain"] < summary["gain_hi"]
    assert summary["concept_baseline"] == pytest.approx(BASE_CONCEPT)


def test_per_prompt_averages_the_samples_of_each_prompt():
    rows = pd.DataFrame({
        "arm": [NO_EDIT] * 4 + [GOOD] * 2, "prompt_index": [0, 0, 1, 1, 0, 0], "sample": [0, 1, 0, 1, 0, 1],
        "p_python": [0.1, 0.3, 0.5, 0.5, 0.9, 0.7], "p_math": 0.0,
        "perplexity": [math.e, math.e**3, 1.0, 1.0, 4.0, 4.0], "relevance": [1.0, 2.0, 0, 0, 0, 0],
        "distinct2": [1.0, 0.5, 1, 1, np.nan, 1.0],
    })  # fmt: skip
    table = per_prompt(rows, "python")
    assert len(table) == 3 and set(table.columns) >= {"arm", "prompt_index", "concept", "log_ppl", "relevance"}
    first = table[(table["arm"] == NO_EDIT) & (table["prompt_index"] == 0)].iloc[0]
    assert first["concept"] == pytest.approx(0.2) and first["log_ppl"] == pytest.approx(2.0)
    assert first["relevance"] == pytest.approx(1.5) and first["distinct2"] == pytest.approx(0.75)
    assert table.loc[table["arm"] == GOOD, "distinct2"].item() == pytest.approx(1.0)  # NaN skipped
