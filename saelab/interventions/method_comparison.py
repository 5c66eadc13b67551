"""SAE steering beside its baselines, in one protocol and one table.

For every category, on the *select* half of neutral prompts (AxBench's protocol):

* **SAE**: the candidate features (the best specialists and the best output features over
  every hook, :mod:`saelab.interventions.steering_candidates`), added at every strength,
  and the best output feature clamped; the hook is thus chosen by the sweep;
* **DiffMean**: the difference of mean residuals, category vs the rest, at the hook where
  it scores best on the output screen, at every strength;
* **prompting**: an instruction to write about the category before the prompt, no edit;

each method's arm is chosen by the same rule (:mod:`saelab.interventions.comparison_stats`).
On the *report* half, which no choice saw, each chosen arm runs beside the unsteered
baseline and beside a **random SAE feature** at the chosen SAE arm's hook and strength: the
control that shows the probe is not fooled by any perturbation of that size.

Suppression (optional): on prompts that invite the category, the chosen SAE feature and the
DiffMean vector are subtracted, chosen and reported the same way, and pass when the concept
falls (CI below 0) fluently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab._util.atomic import write_dir_atomically
from saelab._util.config import JsonConfig
from saelab.interventions.arm_runs import ArmRunner, Sampling, check_prompts
from saelab.interventions.arms import NO_EDIT, Arm, ArmTools
from saelab.interventions.comparison_stats import Rule
from saelab.interventions.concept_tokens import concept_tokens
from saelab.interventions.diffmean import diffmean_vectors
from saelab.interventions.edits import check_strengths
from saelab.interventions.feature_scale import feature_stats
from saelab.interventions.judge_protocol import ConceptJudge
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.steering_candidates import diffmean_hook, feature_candidates, random_feature
from saelab.interventions.steering_plan import Choice, choose_all, held_out_table, report_plan, select_plan
from saelab.interventions.suppression import check_inviting, suppress_categories
from saelab.interventions.sweep import split_prompts

INSTRUCTIONS: dict[str, str] = {
    "python": "Write Python code.",
    "math": "Write about mathematics, with equations and numbers.",
    "urls": "Include web addresses (URLs) and links.",
    "non_english": "Write in a language other than English.",
    "social": "Write it as a social media post, with hashtags.",
    "formal": "Write in a formal, official style.",
    "conversational": "Write in a casual, chatty, conversational tone.",
}
"""The prompting baseline's instruction per category of the labelled dataset."""


@dataclass(frozen=True, kw_only=True)
class ComparisonConfig(JsonConfig):
    hooks: tuple[str, ...] = ()
    """Steering hooks (empty: every SAE given except the probe's)."""
    specialists: int = 1
    """Best specialists (input features, by AUROC over every hook) among each category's candidates."""
    screen_top: int = 8
    """Features per hook and category kept by the logit-lens screen for output scoring."""
    n_output: int = 2
    """Best output-score features (over all hooks) among each category's candidates."""
    output_strength: float = 4.0
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """SAE strengths, multiples of the feature's typical max; clamp and random use them too.
    Weak ones are needed: under the CI rule no SAE arm at 2x or more qualified in 5 of 7
    categories (bench/steering.py, 24 tokens, grid 2-4-8), so the choice fell back to 2x and
    came out at 2.7-7.5x perplexity on the report half."""
    diffmean_strengths: tuple[float, ...] = (0.25, 0.5, 1.0)
    """Multiples of the DiffMean vector. Its norm is 10-40x a feature's typical max on
    SmolLM2 (37-119 against 3-5 at blocks.15-25), so 1 is already a strong push."""
    select_samples: int = 1
    report_samples: int = 2
    max_new_tokens: int = 16
    temperature: float = 0.7
    max_perplexity_ratio: float = 2.0
    min_distinct_ratio: float = 0.5
    n_bootstrap: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("strengths", "diffmean_strengths"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or any(v <= 0 for v in check_strengths(values)):
                raise ValueError(f"{name} must be non-empty, finite and positive, got {values}")
            object.__setattr__(self, name, values)
        object.__setattr__(self, "hooks", tuple(self.hooks))
        if min(self.select_samples, self.report_samples, self.max_new_tokens, self.screen_top) < 1:
            raise ValueError("select_samples, report_samples, max_new_tokens and screen_top must be at least 1")
        if self.n_bootstrap < 1 or not 0 < self.confidence < 1:
            raise ValueError(f"need n_bootstrap >= 1 and 0 < confidence < 1 (every choice reads a CI), got "
                             f"n_bootstrap={self.n_bootstrap}, confidence={self.confidence}")  # fmt: skip
        if self.specialists < 0 or self.n_output < 0 or self.specialists + self.n_output == 0:
            raise ValueError("need specialists >= 0, n_output >= 0, and at least one of them > 0")

    @classmethod
    def demo(cls) -> ComparisonConfig:
        """What ``make demo`` runs in notebook 05: about the cost of the single-method sweep it
        replaced (one output feature beside the specialist, two strengths per method, one
        sample per report prompt), where the default costs 3-5x that."""
        return cls(n_output=1, strengths=(1.0, 2.0), diffmean_strengths=(0.5, 1.0), report_samples=1)

    @property
    def rule(self) -> Rule:
        return Rule(self.max_perplexity_ratio, self.min_distinct_ratio, self.n_bootstrap, self.confidence, self.seed)

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.max_new_tokens, self.temperature, self.seed)


@dataclass(frozen=True)
class SteeringComparison:
    table: pd.DataFrame
    """One row per (category, method) on the report half: the chosen arm, concept gain with
    its CI, perplexity ratio, distinct-2 against the baseline's, relevance, ``passed``."""
    suppression: pd.DataFrame | None
    """The same for suppression on inviting prompts (methods ``sae`` and ``diffmean``)."""
    candidates: pd.DataFrame
    select: pd.DataFrame
    """Select half, one row per (category, arm): the summary the choice was made on."""
    scores: pd.DataFrame = field(repr=False)
    """Every scored continuation (select, report and suppression rows)."""
    config: ComparisonConfig = field(repr=False)

    def n_passed(self, method: str, *, suppression: bool = False) -> int:
        table = self.suppression if suppression else self.table
        if table is None:
            return 0
        return int(table.loc[table["method"] == method, "passed"].to_numpy(bool).sum())

    def counts(self) -> pd.DataFrame:
        """Categories passed per method (steering, and suppression where run)."""
        methods = list(dict.fromkeys(self.table["method"]))
        rows: dict[str, list[float]] = {"steering": [float(self.n_passed(m)) for m in methods]}
        if self.suppression is not None:
            rows["suppression"] = [self.n_passed(m, suppression=True) if m in ("sae", "diffmean") else np.nan
                                   for m in methods]  # fmt: skip
        return pd.DataFrame(rows, index=methods).T

    def save(self, folder: str | Path) -> Path:
        """Every frame as CSV (``table``, ``suppression`` where run, ``candidates``, ``select``,
        ``scores`` with the generated texts, ``counts``) and ``config.json``, as the folder
        ``folder`` (replacing an earlier save there)."""
        frames = {"table": self.table, "suppression": self.suppression, "candidates": self.candidates,
                  "select": self.select, "scores": self.scores, "counts": self.counts()}  # fmt: skip

        def write(tmp: Path) -> None:
            for name, frame in frames.items():
                if frame is not None:
                    frame.to_csv(tmp / f"{name}.csv", index=name == "counts")
            (tmp / "config.json").write_text(self.config.to_json())

        # All or nothing: an interrupted save never leaves a folder that looks complete.
        return write_dir_atomically(Path(folder), write)


def compare_steering_methods(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    probe: ConceptProbe,
    texts: Sequence[str],
    labels: Sequence[str],
    prompts: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    config: ComparisonConfig | None = None,
    suppression_prompts: Mapping[str, Sequence[str]] | None = None,
    judge: ConceptJudge | None = None,
    instructions: Mapping[str, str] | None = None,
    progress: bool = True,
) -> SteeringComparison:
    """SAE steering (features chosen by input *and* output score, hook chosen by the sweep),
    DiffMean, prompting, a random feature and no edit, per category, on held-out prompts."""
    config = config or ComparisonConfig()
    hooks = _steering_hooks(saes, probe, config)
    cats = _categories(probe, labels, categories)
    # Every input check before the first forward pass: a bad input should not cost a run.
    _check_texts(texts, labels, cats)
    split = split_prompts(len(prompts), config.seed)
    check_prompts(model, prompts, config.max_new_tokens)
    if suppression_prompts is not None:
        check_inviting(suppression_prompts, cats)
    tools = ArmTools(
        saes={h: saes[h] for h in hooks}, stats={h: feature_stats(model, saes[h], texts) for h in hooks},
        diffmean=diffmean_vectors(model, hooks, texts, labels, progress=progress),
        instructions=dict(instructions or INSTRUCTIONS),
    )  # fmt: skip
    runner = ArmRunner(model, tools, probe, list(prompts), config.sampling, progress)
    select_ids = [runner.prompts[i] for i in np.flatnonzero(split == "select")]
    tokens = concept_tokens(model, texts, labels)
    candidates = feature_candidates(
        model, tools, texts, labels, select_ids, tokens, cats, specialists=config.specialists,
        screen_top=config.screen_top, n_output=config.n_output, strength=config.output_strength,
    )  # fmt: skip
    middle = config.diffmean_strengths[len(config.diffmean_strengths) // 2]
    dm_hooks = {c: diffmean_hook(model, tools, c, select_ids, tokens, middle)[0] for c in cats}
    arms = select_plan(candidates, dm_hooks, cats, config)
    select = runner(
        [(int(p), k, a) for p in np.flatnonzero(split == "select") for k in range(config.select_samples)
         for a in [NO_EDIT, *sorted({a for group in arms.values() for a in group})]], "select", "select half",
    )  # fmt: skip
    choices, select_table = choose_all(select, arms, cats, config.rule, ("sae", "diffmean", "prompting"))
    _add_random_controls(choices, candidates, tools, cats, config.seed)
    report = runner(report_plan(choices, np.flatnonzero(split == "report"), config.report_samples), "report",
                    "report half")  # fmt: skip
    table = held_out_table(report, choices, cats, config.rule, direction=1, judge=judge, texts=list(prompts))
    suppression, supp_scores = None, None
    if suppression_prompts is not None:
        suppression, supp_scores = suppress_categories(
            model, tools, probe, suppression_prompts, choices, dm_hooks, cats, config, progress
        )
    scores = pd.concat([s for s in (select, report, supp_scores) if s is not None], ignore_index=True)
    return SteeringComparison(table, suppression, candidates, select_table, scores, config)


def _add_random_controls(
    choices: dict[tuple[str, str], Choice], candidates: pd.DataFrame, tools: ArmTools, cats: list[str], seed: int
) -> None:
    """Per category, a random live feature at the chosen SAE arm's hook and strength."""
    for category in cats:
        sae_choice = choices[(category, "sae")]
        avoid = candidates.loc[candidates["category"] == category, "feature"].astype(int).tolist()
        feature = random_feature(tools, sae_choice.arm.hook, avoid, seed + cats.index(category))
        random_arm = Arm("random", category, sae_choice.arm.hook, feature, sae_choice.arm.strength)
        # Not chosen by the rule: it takes the SAE arm's hook and strength, and its verdict on the select half.
        choices[(category, "random")] = Choice(random_arm, sae_choice.qualified)


def _steering_hooks(saes: Mapping[str, SAE], probe: ConceptProbe, config: ComparisonConfig) -> list[str]:
    hooks = list(config.hooks) or [h for h in saes if h != probe.hook]
    unknown = [h for h in hooks if h not in saes]
    if unknown:
        raise ValueError(f"steering hooks {unknown} are not in the profile's SAEs {list(saes)}")
    if not hooks:
        raise ValueError("no steering hook: give SAEs at hooks other than the probe's")
    return hooks


def _check_texts(texts: Sequence[str], labels: Sequence[str], cats: list[str]) -> None:
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    counts = {c: sum(label == c for label in labels) for c in cats}
    few = [c for c in cats if counts[c] < 3]
    if few:
        raise ValueError(
            f"need at least 2 texts of {few[0]!r} for DiffMean and 3 for its characteristic tokens; "
            f"got {counts[few[0]]} (categories short of texts: {few})"
        )
    if any(len(labels) - n < 2 for n in counts.values()):
        raise ValueError("DiffMean needs at least 2 texts outside each category")


def _categories(probe: ConceptProbe, labels: Sequence[str], categories: Sequence[str] | None) -> list[str]:
    cats = list(dict.fromkeys(categories if categories is not None else labels))
    unknown = [c for c in cats if c not in probe.categories]
    if unknown:
        raise ValueError(f"the probe does not know the categories {unknown}; it knows {probe.categories}")
    return cats
