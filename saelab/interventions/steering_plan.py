"""Which arms a steering comparison runs on each half, and how its choices become table rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from saelab.interventions.arms import NO_EDIT, Arm
from saelab.interventions.comparison_stats import Rule, arm_summary, choose, passed, per_prompt
from saelab.interventions.judge_protocol import ConceptJudge

if TYPE_CHECKING:
    from saelab.interventions.method_comparison import ComparisonConfig


@dataclass(frozen=True)
class Choice:
    """The arm a method chose for a category, and whether it met the rule on the select half."""

    arm: Arm
    qualified: bool


def select_plan(
    candidates: pd.DataFrame, diffmean_hooks: dict[str, str], categories: Sequence[str], config: ComparisonConfig
) -> dict[tuple[str, str], list[Arm]]:
    """Per (category, method) the arms the select half tries. SAE arms do not depend on the
    category (``concept=""``), so a feature that two categories try runs once."""
    plan: dict[tuple[str, str], list[Arm]] = {}
    for category in categories:
        mine = candidates.loc[(candidates["category"] == category) & candidates["chosen"].to_numpy(bool)]
        mine = mine.sort_values("output_score", ascending=False)
        features = list(dict.fromkeys(zip(mine["hook"], mine["feature"].astype(int), strict=True)))
        sae = [Arm("sae", "", h, f, s) for h, f in features for s in config.strengths]
        if features:
            hook, feature = features[0]  # the best output score: also tried clamped
            sae += [Arm("clamp", "", hook, feature, s) for s in config.strengths]
        if not sae:
            raise ValueError(f"no SAE candidate for {category!r}: every screened feature is dead")
        plan[(category, "sae")] = sae
        hook = diffmean_hooks[category]
        plan[(category, "diffmean")] = [Arm("diffmean", category, hook, -1, s) for s in config.diffmean_strengths]
        plan[(category, "prompting")] = [Arm("prompting", category)]
    return plan


def report_plan(
    choices: dict[tuple[str, str], Choice], prompts: np.ndarray, samples: int
) -> list[tuple[int, int, Arm]]:
    """The baseline and every chosen arm on ``prompts``."""
    arms = [NO_EDIT, *sorted({c.arm for c in choices.values()} - {NO_EDIT})]
    return [(int(p), k, a) for p in prompts for k in range(samples) for a in arms]


def choose_all(
    select: pd.DataFrame,
    arms: dict[tuple[str, str], list[Arm]],
    categories: Sequence[str],
    rule: Rule,
    methods: Sequence[str],
    *,
    direction: int = 1,
) -> tuple[dict[tuple[str, str], Choice], pd.DataFrame]:
    """Each (category, method)'s chosen arm, and every tried arm's select-half summary."""
    choices: dict[tuple[str, str], Choice] = {}
    frames = []
    for category in categories:
        table = per_prompt(select, category)
        for method in methods:
            arm, qualified, summary = choose(table, arms[(category, method)], NO_EDIT, rule, direction)
            choices[(category, method)] = Choice(arm, qualified)  # type: ignore[arg-type]
            frames.append(summary.assign(category=category, method=method))
    frame = pd.concat(frames, ignore_index=True)
    frame.insert(1, "label", [a.label for a in frame["arm"]])
    return choices, frame


def held_out_table(
    report: pd.DataFrame,
    choices: dict[tuple[str, str], Choice],
    categories: Sequence[str],
    rule: Rule,
    *,
    direction: int,
    judge: ConceptJudge | None = None,
    texts: list[str] | None = None,
) -> pd.DataFrame:
    """One row per (category, method), ``none`` first: the chosen arm against the baseline."""
    rows = []
    for category in categories:
        table = per_prompt(report, category)
        methods = [m for c, m in choices if c == category]
        for method in ["none", *methods]:
            choice = choices.get((category, method), Choice(NO_EDIT, True))
            summary = arm_summary(table, choice.arm, NO_EDIT, rule)
            row = {"category": category, "method": method, "arm": choice.arm.label, "hook": choice.arm.hook,
                   "feature": choice.arm.feature, "strength": choice.arm.strength, **summary,
                   "qualified": choice.qualified,
                   "passed": method != "none" and passed(summary, rule, direction)}  # fmt: skip
            if judge is not None and texts is not None:
                row["judge"] = _judge_mean(judge, report, choice.arm, category, texts)
            rows.append(row)
    return pd.DataFrame(rows)


def _judge_mean(judge: ConceptJudge, report: pd.DataFrame, arm: Arm, category: str, texts: list[str]) -> float:
    rows = report.loc[report["arm"] == arm]
    rated = judge.rate([texts[int(p)] for p in rows["prompt_index"]], rows["text"].tolist(), category)
    return float(np.nanmean(rated["harmonic"].to_numpy(float))) if len(rated) else float("nan")
