"""The statistics of a steering sweep, on its table of scored continuations (numpy and pandas only).

Prompts are the unit of resampling: a prompt's samples are averaged first, and confidence
intervals are percentile bootstraps over prompts. Perplexity is averaged geometrically (a
few broken continuations would otherwise dominate an arithmetic mean). An arm is a
``(feature, strength)``; the baseline is ``(-1, 0.0)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from saelab.interventions.sweep import SweepConfig

Arm = tuple[int, float]
BASELINE: Arm = (-1, 0.0)


@dataclass(frozen=True)
class HeldOut:
    """The chosen arm against the baseline on the prompts that did not choose it."""

    feature: int
    strength: float
    concept_baseline: float
    concept_steered: float
    gain: float
    gain_lo: float
    gain_hi: float
    perplexity_baseline: float
    perplexity_steered: float
    perplexity_ratio: float
    relevance_baseline: float
    relevance_steered: float
    n_prompts: int
    qualified: bool
    """Whether any arm met the perplexity bound on the selection half."""
    max_perplexity_ratio: float = 2.0

    @property
    def passed(self) -> bool:
        """Concept up (the CI excludes 0) with perplexity within the bound, on held-out prompts."""
        return bool(self.gain_lo > 0 and self.perplexity_ratio <= self.max_perplexity_ratio)

    def as_row(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def per_prompt(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean concept and relevance, and mean log-perplexity, per (feature, strength, prompt)."""
    frame = scores.assign(log_ppl=np.log(scores["perplexity"].to_numpy(float)))
    keys = ["feature", "strength", "prompt_index"]
    return pd.DataFrame(frame.groupby(keys, as_index=False)[["concept", "log_ppl", "relevance"]].mean())


def bootstrap_mean_ci(values: np.ndarray, n_bootstrap: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of the finite ``values`` (NaN when undefined)."""
    values = values[np.isfinite(values)]
    if values.size < 2 or n_bootstrap == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n_bootstrap, values.size), replace=True).mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def arm_curve(scores: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """Per arm: concept mean with CI, geometric-mean perplexity, relevance, prompts."""
    rows = []
    table = per_prompt(scores)
    for arm in sorted(set(zip(table["feature"].astype(int), table["strength"].astype(float), strict=True))):
        group = table.loc[(table["feature"] == arm[0]) & (table["strength"] == arm[1])]
        concept = group["concept"].to_numpy(float)
        lo, hi = bootstrap_mean_ci(concept, config.n_bootstrap, config.confidence, config.seed)
        rows.append({"feature": arm[0], "strength": arm[1], "concept": float(np.nanmean(concept)),
                     "concept_lo": lo, "concept_hi": hi,
                     "perplexity": float(np.exp(group["log_ppl"].to_numpy(float).mean())),
                     "relevance": float(group["relevance"].to_numpy(float).mean()),
                     "n_prompts": len(group)})  # fmt: skip
    return pd.DataFrame(rows)


def choose_arm(curve: pd.DataFrame, max_ratio: float) -> tuple[Arm, bool]:
    """The arm with the largest concept score whose perplexity is within ``max_ratio`` of the
    baseline's; when none qualifies, the weakest strength's best arm (and ``False``)."""
    is_base = (curve["feature"] == BASELINE[0]).to_numpy()
    if is_base.sum() != 1 or is_base.all():
        raise ValueError("the curve needs exactly one baseline row and at least one steered arm")
    base_ppl = float(curve["perplexity"].to_numpy(float)[is_base][0])
    steered = curve.loc[~is_base]
    strength = steered["strength"].to_numpy(float)
    ok = steered["perplexity"].to_numpy(float) <= max_ratio * base_ppl
    qualified = bool(ok.any())
    candidates = ok if qualified else np.abs(strength) == np.abs(strength).min()
    concept = np.where(candidates, np.nan_to_num(steered["concept"].to_numpy(float), nan=-np.inf), -np.inf)
    best = int(np.argmax(concept))
    return (int(steered["feature"].to_numpy()[best]), float(strength[best])), qualified


def held_out_summary(report: pd.DataFrame, arm: Arm, qualified: bool, config: SweepConfig) -> HeldOut:
    """Paired per prompt: the chosen arm's concept gain over the baseline, its CI, and the rest."""
    rows = per_prompt(report)
    base = rows[rows["feature"] == BASELINE[0]].set_index("prompt_index")
    steer = rows[(rows["feature"] == arm[0]) & (rows["strength"] == arm[1])].set_index("prompt_index")
    steer = steer.reindex(base.index)
    b, s = ({k: frame[k].to_numpy(float) for k in ("concept", "log_ppl", "relevance")} for frame in (base, steer))
    gain = s["concept"] - b["concept"]
    lo, hi = bootstrap_mean_ci(gain, config.n_bootstrap, config.confidence, config.seed)
    ppl_base, ppl_steer = float(np.exp(b["log_ppl"].mean())), float(np.exp(s["log_ppl"].mean()))
    return HeldOut(
        feature=arm[0], strength=arm[1], concept_baseline=float(np.nanmean(b["concept"])),
        concept_steered=float(np.nanmean(s["concept"])), gain=float(np.nanmean(gain)), gain_lo=lo, gain_hi=hi,
        perplexity_baseline=ppl_base, perplexity_steered=ppl_steer, perplexity_ratio=ppl_steer / ppl_base,
        relevance_baseline=float(b["relevance"].mean()), relevance_steered=float(s["relevance"].mean()),
        n_prompts=len(base), qualified=qualified, max_perplexity_ratio=config.max_perplexity_ratio,
    )  # fmt: skip
