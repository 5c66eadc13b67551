"""The statistics of a steering comparison, on its table of scored continuations (numpy and pandas).

Prompts are the unit of resampling: a prompt's samples are averaged first, every arm is
paired with the unsteered baseline on the same prompts, and intervals are percentile
bootstraps over prompts. The choice of an arm on the *select* half must hold on prompts it
never saw, so an arm qualifies only when

* the **upper** end of its perplexity ratio's CI (paired, geometric) is within the bound:
  a point estimate under the bound on 10-20 prompts is no promise for the next 20; and
* its continuations are not degenerate: mean distinct-2 at least ``min_distinct_ratio`` of
  the baseline's (repetition such as ``= = = =`` is easy to predict, so perplexity alone
  calls it fluent).

Among qualified arms the one that moves the concept furthest in the wanted direction is
chosen; the report half then measures it against the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from saelab.interventions.sweep_stats import bootstrap_mean_ci

VALUES = ("concept", "log_ppl", "relevance", "distinct2")


@dataclass(frozen=True)
class Rule:
    """When an arm qualifies, and when a held-out result passes."""

    max_perplexity_ratio: float = 2.0
    min_distinct_ratio: float = 0.5
    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0


def per_prompt(rows: pd.DataFrame, concept: str) -> pd.DataFrame:
    """Mean concept probability (of ``concept``), log-perplexity, relevance and distinct-2 per
    (arm, prompt)."""
    frame = pd.DataFrame({
        "arm": rows["arm"], "prompt_index": rows["prompt_index"], "concept": rows[f"p_{concept}"],
        "log_ppl": np.log(rows["perplexity"].to_numpy(float)), "relevance": rows["relevance"],
        "distinct2": rows["distinct2"],
    })  # fmt: skip
    return pd.DataFrame(frame.groupby(["arm", "prompt_index"], as_index=False, sort=True)[list(VALUES)].mean())


def paired(table: pd.DataFrame, arm: object, baseline: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-prompt rows of ``arm`` and of ``baseline`` on the prompts both ran."""
    a = table.loc[table["arm"] == arm].set_index("prompt_index")
    b = table.loc[table["arm"] == baseline].set_index("prompt_index")
    common = a.index.intersection(b.index)
    return a.loc[common], b.loc[common]


def arm_summary(table: pd.DataFrame, arm: object, baseline: object, rule: Rule) -> dict[str, object]:
    """One arm against the baseline on the prompts of ``table`` (per-prompt rows)."""
    a, b = paired(table, arm, baseline)
    gain = a["concept"].to_numpy(float) - b["concept"].to_numpy(float)
    log_ratio = a["log_ppl"].to_numpy(float) - b["log_ppl"].to_numpy(float)
    lo, hi = bootstrap_mean_ci(gain, rule.n_bootstrap, rule.confidence, rule.seed)
    _, ratio_hi = bootstrap_mean_ci(log_ratio, rule.n_bootstrap, rule.confidence, rule.seed)
    base_distinct = float(np.nanmean(b["distinct2"].to_numpy(float))) if len(b) else float("nan")
    arm_distinct = float(np.nanmean(a["distinct2"].to_numpy(float))) if len(a) else float("nan")
    return {
        "concept_baseline": _mean(b["concept"]), "concept_steered": _mean(a["concept"]), "gain": _mean(gain),
        "gain_lo": lo, "gain_hi": hi, "perplexity_ratio": float(np.exp(_mean(log_ratio))),
        "perplexity_ratio_hi": float(np.exp(ratio_hi)) if np.isfinite(ratio_hi) else float("nan"),
        "distinct2_baseline": base_distinct, "distinct2_steered": arm_distinct,
        "distinct_ratio": arm_distinct / base_distinct if base_distinct > 0 else float("nan"),
        "relevance_baseline": _mean(b["relevance"]), "relevance_steered": _mean(a["relevance"]),
        "n_prompts": len(a),
    }  # fmt: skip


def fluent(summary: dict[str, object], rule: Rule, *, upper: bool) -> bool:
    """Perplexity within the bound (its CI's upper end with ``upper``) and no degeneration."""
    ratio = float(summary["perplexity_ratio_hi" if upper else "perplexity_ratio"])  # type: ignore[arg-type]
    distinct = float(summary["distinct_ratio"])  # type: ignore[arg-type]
    return bool(ratio <= rule.max_perplexity_ratio and not distinct < rule.min_distinct_ratio)


def passed(summary: dict[str, object], rule: Rule, direction: int) -> bool:
    """Held out: the concept moved the wanted way (CI excludes 0), fluently."""
    lo, hi = float(summary["gain_lo"]), float(summary["gain_hi"])  # type: ignore[arg-type]
    moved = lo > 0 if direction > 0 else hi < 0
    return bool(moved and fluent(summary, rule, upper=False))


def choose(
    table: pd.DataFrame, arms: list, baseline: object, rule: Rule, direction: int
) -> tuple[object, bool, pd.DataFrame]:
    """The qualified arm that moves the concept furthest in ``direction`` (+1 raise, -1 lower),
    whether any qualified, and every arm's select-half summary. With none qualified: the
    arm of the smallest |strength| that moves it furthest."""
    rows = [{"arm": arm, **arm_summary(table, arm, baseline, rule)} for arm in arms]
    summary = pd.DataFrame(rows)
    summary["qualified"] = [fluent(r, rule, upper=True) for r in rows]
    gain = np.nan_to_num(summary["gain"].to_numpy(float) * direction, nan=-np.inf)
    ok = summary["qualified"].to_numpy(bool)
    qualified = bool(ok.any())
    if not qualified:
        strength = np.abs([float(getattr(a, "strength", 0.0)) for a in arms])
        ok = strength == strength.min()
    best = int(np.argmax(np.where(ok, gain, -np.inf)))
    summary["chosen"] = np.arange(len(summary)) == best
    return arms[best], qualified, summary


def _mean(values: object) -> float:
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)) if array.size and np.isfinite(array).any() else float("nan")
