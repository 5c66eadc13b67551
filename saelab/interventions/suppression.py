"""Suppression: on prompts that invite a category, does subtracting its feature lower it?

For each category its own inviting prompts ("Write a Python function that") are split in
half. On the select half the category's chosen SAE feature (from the steering comparison)
and its DiffMean vector are subtracted at every strength, and each method's arm that lowers
the concept most under the same fluency rule is chosen; the report half measures it. A
method passes when the concept's CI lies below 0 at perplexity within the bound and
without degeneration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from transformer_lens import HookedTransformer

from saelab.interventions.arm_runs import ArmRunner
from saelab.interventions.arms import NO_EDIT, Arm, ArmTools
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.steering_plan import Choice, choose_all, held_out_table
from saelab.interventions.sweep import split_prompts

if TYPE_CHECKING:
    from saelab.interventions.method_comparison import ComparisonConfig

METHODS = ("sae", "diffmean")


def suppress_categories(
    model: HookedTransformer,
    tools: ArmTools,
    probe: ConceptProbe,
    prompts: Mapping[str, Sequence[str]],
    steering: dict[tuple[str, str], Choice],
    diffmean_hooks: dict[str, str],
    categories: Sequence[str],
    config: ComparisonConfig,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The suppression table (one row per category and method, ``none`` included) and its rows."""
    check_inviting(prompts, categories)
    texts, halves = _layout(prompts, categories, config.seed)
    runner = ArmRunner(model, tools, probe, texts, config.sampling, progress)
    arms = {}
    for category in categories:
        feature_arm = steering[(category, "sae")].arm
        arms[(category, "sae")] = [Arm("sae", "", feature_arm.hook, feature_arm.feature, -s) for s in config.strengths]
        arms[(category, "diffmean")] = [Arm("diffmean", category, diffmean_hooks[category], -1, -s)
                                        for s in config.diffmean_strengths]  # fmt: skip
    plan = [(p, k, a) for c in categories for p in halves[c]["select"] for k in range(config.select_samples)
            for a in [NO_EDIT, *arms[(c, "sae")], *arms[(c, "diffmean")]]]  # fmt: skip
    select = runner(plan, "suppress-select", "suppression, select half")
    choices: dict[tuple[str, str], Choice] = {}
    for category in categories:
        mine = select.loc[select["prompt_index"].isin(halves[category]["select"])]
        chosen, _ = choose_all(mine, arms, [category], config.rule, METHODS, direction=-1)
        choices.update(chosen)
    plan = [(p, k, a) for c in categories for p in halves[c]["report"] for k in range(config.report_samples)
            for a in [NO_EDIT, choices[(c, "sae")].arm, choices[(c, "diffmean")].arm]]  # fmt: skip
    report = runner(plan, "suppress-report", "suppression, report half")
    frames = []
    for category in categories:
        mine = report.loc[report["prompt_index"].isin(halves[category]["report"])]
        own = {k: v for k, v in choices.items() if k[0] == category}
        frames.append(held_out_table(mine, own, [category], config.rule, direction=-1))
    return pd.concat(frames, ignore_index=True), pd.concat([select, report], ignore_index=True)


def check_inviting(prompts: Mapping[str, Sequence[str]], categories: Sequence[str]) -> None:
    """At least 2 inviting prompts (one per half) for every category, or a clear error."""
    missing = [c for c in categories if len(prompts.get(c, ())) < 2]
    if missing:
        raise ValueError(f"suppression needs at least 2 inviting prompts per category; {missing} have fewer")


def _layout(
    prompts: Mapping[str, Sequence[str]], categories: Sequence[str], seed: int
) -> tuple[list[str], dict[str, dict[str, list[int]]]]:
    """All inviting prompts in one list, and each category's select and report indices into it."""
    texts: list[str] = []
    halves: dict[str, dict[str, list[int]]] = {}
    for category in categories:
        own = list(prompts[category])
        index = np.arange(len(texts), len(texts) + len(own))
        split = split_prompts(len(own), seed)
        halves[category] = {h: index[split == h].tolist() for h in ("select", "report")}
        texts += own
    return texts, halves
