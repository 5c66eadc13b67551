"""One object that steers and scores: what the steering playground drives.

It holds the model, the SAE to steer, its feature statistics, a ranking of category
specialists to pick from, and the concept probe, and turns (prompt, feature, strength, mode)
into a baseline and a steered continuation with their concept, fluency and relevance scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab._util.hook_names import hook_layer
from saelab.data import load_dataset
from saelab.interventions.category_steering import ranked_specialists
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.generation import DEFAULT_NEW_TOKENS, generate, prompt_ids
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.repetition import distinct_n
from saelab.interventions.steering import SteerMode, StrengthUnit
from saelab.interventions.text_scores import continuation_scores
from saelab.profiles import get as get_profile, names as profile_names
from saelab.saes import sae_hook_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteeringOutcome:
    """A baseline and a steered continuation of one prompt, with their scores."""

    prompt: str
    feature: int
    strength: float
    unit: str
    mode: str
    seed: int
    baseline: str
    steered: str
    concept: str | None
    """The category the probe scored (None: no probe)."""
    concept_baseline: float | None
    concept_steered: float | None
    perplexity_baseline: float
    perplexity_steered: float
    relevance_baseline: float
    relevance_steered: float
    distinct2_baseline: float
    """Distinct bigrams / bigrams of the continuation's tokens: repetition (``= = = =``) is
    fluent by perplexity's measure, not by this one (NaN under two tokens)."""
    distinct2_steered: float


@dataclass
class Steerer:
    model: HookedTransformer
    sae: SAE
    stats: FeatureStats
    features: pd.DataFrame
    """Ranked candidates: ``feature``, ``category``, ``label``."""
    probe: ConceptProbe | None
    max_new_tokens: int = DEFAULT_NEW_TOKENS
    temperature: float = 0.7

    @property
    def hook(self) -> str:
        return sae_hook_name(self.sae)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def concepts(self) -> list[str]:
        return list(self.probe.categories) if self.probe is not None else []

    @classmethod
    def build(
        cls,
        model: HookedTransformer,
        sae: SAE,
        *,
        probe: ConceptProbe | None = None,
        probe_sae: SAE | None = None,
        texts: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        top: int = 3,
        max_new_tokens: int = DEFAULT_NEW_TOKENS,
        temperature: float = 0.7,
    ) -> Steerer:
        """Rank each category's ``top`` specialists on ``texts`` (default: the labelled dataset)
        and take ``probe``, or train the concept probe on ``probe_sae`` (default: the deepest
        other SAE of the profile this SAE belongs to; no probe when there is none)."""
        if texts is None or labels is None:
            data = load_dataset()
            texts, labels = list(data["text"]), list(data["category"])
        texts, labels = list(texts), list(labels)
        hook = sae_hook_name(sae)
        ranked = ranked_specialists(model, sae, texts, labels, top=top)
        features = pd.DataFrame({
            "feature": ranked["feature"].astype(int), "category": ranked["category"],
            "label": [f"#{f} · {c} specialist {r} · AUROC {a:.2f}"
                      for f, c, r, a in zip(ranked["feature"], ranked["category"], ranked["rank"], ranked["auroc"],
                                            strict=True)],
        })  # fmt: skip
        if probe is None:
            probe_sae = probe_sae if probe_sae is not None else _other_profile_sae(model, hook)
            probe = ConceptProbe.train(model, probe_sae, texts, labels) if probe_sae is not None else None
        return cls(model, sae, feature_stats(model, sae), features, probe, max_new_tokens, temperature)

    def run(
        self,
        prompt: str,
        feature: int,
        strength: float,
        *,
        mode: SteerMode = "add",
        unit: StrengthUnit = "max",
        concept: str | None = None,
        seed: int = 0,
    ) -> SteeringOutcome:
        """Generate the baseline and the steered continuation (same seed) and score both;
        ``concept`` names the category the probe scores (None: no concept score)."""
        gen = generate(self.model, prompt, sae=self.sae, edits={int(feature): float(strength)}, mode=mode,
                       unit=unit, stats=self.stats, seed=seed, max_new_tokens=self.max_new_tokens,
                       temperature=self.temperature)  # fmt: skip
        start = prompt_ids(self.model, prompt)
        fluency = continuation_scores(self.model, [start, start], [gen.baseline_ids, gen.steered_ids])
        scores: list[float | None] = [None, None]
        if concept is not None and concept not in self.concepts:
            raise ValueError(f"the concept probe knows {self.concepts}, not {concept!r}")
        if self.probe is not None and concept is not None:
            texts = [gen.baseline, gen.steered]
            scores = [float(self.probe.score(self.model, [t], concept)[0]) if t.strip() else None for t in texts]
        return SteeringOutcome(
            prompt, int(feature), float(strength), unit, mode, int(seed), gen.baseline, gen.steered, concept,
            scores[0], scores[1], float(fluency.perplexity[0]), float(fluency.perplexity[1]),
            float(fluency.relevance[0]), float(fluency.relevance[1]),
            distinct_n(gen.baseline_ids, 2), distinct_n(gen.steered_ids, 2),
        )  # fmt: skip


def _other_profile_sae(model: HookedTransformer, hook: str) -> SAE | None:
    """The deepest SAE, at another hook, of a profile with this model and this hook."""
    for name in profile_names():
        profile = get_profile(name)
        if profile.model_name != model.cfg.model_name or hook not in profile.hooks:
            continue
        others = sorted((h for h in profile.hooks if h != hook), key=lambda h: hook_layer(h) or 0)
        if others:
            return profile.load_sae(others[-1], device=str(model.cfg.device or "cpu"))
    log.warning("No other SAE found for %s; the steerer has no concept probe", hook)
    return None
