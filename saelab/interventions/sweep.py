"""How steering a category's features changes generated text, judged on held-out prompts.

AxBench's protocol: the prompts are split in two. On the *select* half every candidate
feature is steered at every strength, and the (feature, strength) with the largest concept
score whose perplexity stays within ``select_perplexity_ratio`` of the baseline's is chosen.
Only that choice and the baseline then run on the *report* half, which the choice never saw,
and the result is reported there.

Within a (prompt, sample) every row shares its random numbers: strength 0 is the unsteered
baseline, and a steered row differs from it only through the edit. Concept scores come from a
:class:`ConceptProbe` on another layer; fluency and relevance from
:mod:`saelab.interventions.text_scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab._util.config import JsonConfig
from saelab.interventions.arm_runs import ArmRunner, Sampling
from saelab.interventions.arms import NO_EDIT, Arm as SteeringArm, ArmTools
from saelab.interventions.edits import check_features, check_strengths
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.steering import STEER_MODES, SteerMode, raw_strengths
from saelab.interventions.sweep_stats import BASELINE, Arm, HeldOut, arm_curve, choose_arm, held_out_summary
from saelab.saes import sae_hook_name

SCORE_COLUMNS = ["prompt_index", "split", "sample", "feature", "strength", "text", "concept", "perplexity",
                 "relevance", "distinct2"]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SweepConfig(JsonConfig):
    strengths: tuple[float, ...] = (2.0, 4.0, 8.0)
    """Multiples of each feature's typical max activation (the baseline, 0, is always run)."""
    mode: SteerMode = "add"
    select_samples: int = 1
    """Continuations per prompt and arm on the selection half."""
    report_samples: int = 2
    """Continuations per prompt on the report half (baseline and the chosen arm only)."""
    max_new_tokens: int = 24
    temperature: float = 0.7
    max_perplexity_ratio: float = 2.0
    """The bound a held-out result must meet: perplexity within this multiple of the baseline's."""
    select_perplexity_ratio: float = 1.5
    """The bound an arm must meet on the selection half to be chosen. Tighter than
    ``max_perplexity_ratio``: perplexity varies between the halves, so an arm chosen right at
    the held-out bound can come out above it on the held-out prompts."""
    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.strengths or any(s == 0 for s in check_strengths(self.strengths)):
            raise ValueError(f"strengths must be non-empty, finite and non-zero, got {self.strengths}")
        if self.mode not in STEER_MODES:
            raise ValueError(f"mode must be one of {list(STEER_MODES)}, got {self.mode!r}")
        if min(self.select_samples, self.report_samples, self.max_new_tokens) < 1:
            raise ValueError("select_samples, report_samples and max_new_tokens must be at least 1")
        if not 1 < self.select_perplexity_ratio <= self.max_perplexity_ratio:
            raise ValueError(
                "need 1 < select_perplexity_ratio <= max_perplexity_ratio, got "
                f"{self.select_perplexity_ratio} and {self.max_perplexity_ratio}"
            )


@dataclass(frozen=True)
class SweepResult:
    concept: str
    features: list[int]
    """The candidate features that were swept."""
    mode: str
    scores: pd.DataFrame
    """One row per continuation: prompt, split, sample, feature, strength, text, concept, perplexity, relevance,
    distinct2."""
    curve: pd.DataFrame
    """Selection half, per (feature, strength): concept (mean, CI), perplexity (geometric mean),
    relevance, ``chosen``; the baseline is feature -1, strength 0."""
    held_out: HeldOut
    config: SweepConfig = field(repr=False)

    @property
    def feature(self) -> int:
        return self.held_out.feature

    def by_strength(self, feature: int | None = None) -> pd.DataFrame:
        """One feature's curve (default: the chosen one) with the baseline as strength 0."""
        feature = self.feature if feature is None else feature
        rows = self.curve.loc[self.curve["feature"].isin([BASELINE[0], feature]).to_numpy()]
        return pd.DataFrame(rows).sort_values(by="strength").reset_index(drop=True)

    def summary(self) -> dict[str, object]:
        """One row of a table over categories (:func:`steering_table`)."""
        row = self.held_out.as_row()
        return {"category": self.concept, "concept_gain": row.pop("gain"), **row}


def steering_table(results: Sequence[SweepResult]) -> pd.DataFrame:
    """One row per category: held-out concept gain with its CI, perplexity ratio, pass."""
    return pd.DataFrame([r.summary() for r in results])


def split_prompts(n: int, seed: int) -> np.ndarray:
    """``"select"`` or ``"report"`` per prompt: a seeded half/half split."""
    if n < 2:
        raise ValueError(f"the sweep needs at least 2 prompts (half choose, half report), got {n}")
    order = np.random.default_rng(seed).permutation(n)
    split = np.array(["report"] * n, dtype=object)
    split[order[: n // 2]] = "select"
    return split


def steering_sweep(
    model: HookedTransformer,
    sae: SAE,
    features: Sequence[int],
    prompts: Sequence[str],
    *,
    probe: ConceptProbe,
    concept: str,
    config: SweepConfig | None = None,
    stats: FeatureStats | None = None,
    progress: bool = True,
) -> SweepResult:
    """Choose a (feature, strength) for ``concept`` on half the prompts; report it on the other half."""
    config = config or SweepConfig()
    features = list(dict.fromkeys(check_features(features, sae.cfg.d_sae)))
    if concept not in probe.categories:
        raise ValueError(f"concept {concept!r} is not one the probe knows: {probe.categories}")
    stats = stats if stats is not None else feature_stats(model, sae)
    raw_strengths({f: 1.0 for f in features}, sae, stats=stats)  # dead features fail here
    hook = sae_hook_name(sae)
    tools = ArmTools(saes={hook: sae}, stats={hook: stats})
    sampling = Sampling(config.max_new_tokens, config.temperature, config.seed)
    runner = ArmRunner(model, tools, probe, list(prompts), sampling, progress=progress)
    split = split_prompts(len(prompts), config.seed)
    arms = [BASELINE, *((f, float(s)) for f in features for s in config.strengths)]
    select_idx, report_idx = np.flatnonzero(split == "select"), np.flatnonzero(split == "report")
    select = _scored_rows(runner, hook, config.mode, concept, select_idx, arms, config.select_samples, "select")
    curve = arm_curve(select, config)
    chosen, qualified = choose_arm(curve, config.select_perplexity_ratio)
    report = _scored_rows(runner, hook, config.mode, concept, report_idx, [BASELINE, chosen], config.report_samples,
                          "report")  # fmt: skip
    held = held_out_summary(report, chosen, qualified, config)
    curve["chosen"] = (curve["feature"] == chosen[0]) & (curve["strength"] == chosen[1])
    scores = pd.concat([select, report], ignore_index=True)
    scores.insert(1, "prompt", [prompts[i] for i in scores["prompt_index"]])
    return SweepResult(concept, features, config.mode, scores, curve, held, config)


def _scored_rows(
    runner: ArmRunner,
    hook: str,
    mode: str,
    concept: str,
    prompts: np.ndarray,
    arms: list[Arm],
    samples: int,
    split: str,
) -> pd.DataFrame:
    """One scored row per (prompt, sample, arm), run by the comparison's :class:`ArmRunner`:
    ``feature`` and ``strength`` (the baseline is ``BASELINE``) and the probe's ``concept``."""
    method = "clamp" if mode == "clamp" else "sae"
    steer = {arm: NO_EDIT if arm == BASELINE else SteeringArm(method, "", hook, arm[0], arm[1]) for arm in arms}
    plan = [(int(p), k, steer[arm]) for p in prompts for k in range(samples) for arm in arms]
    frame = runner(plan, split, desc=f"steering {concept}")
    return frame.assign(concept=frame[f"p_{concept}"]).loc[:, SCORE_COLUMNS]
