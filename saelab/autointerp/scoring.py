"""Score a feature's explanation and its controls on the held-out scoring split.

Every metric comes with two controls, because a score means something only as a margin
over them:
- ``shuffled``: the same scorer on another feature's explanation (same explainer), on this
  feature's contexts; what an explanation that is not about this feature gets;
- ``all_negative``: what a scorer that always answers "no" (or predicts nothing) gets; for
  plain accuracy on 2 positives and 5 negatives that is already 0.71.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from saelab.autointerp.backends.base import Backend
from saelab.autointerp.feature_examples import FeatureExamples
from saelab.autointerp.scorers import metrics
from saelab.autointerp.scorers.detection import DetectionConfig, detection_probabilities, detection_score
from saelab.autointerp.scorers.embedding import TextEmbedder, embedding_scores
from saelab.autointerp.scorers.simulation import simulation_scores

Scorer = Literal["simulation", "embedding", "detection", "fuzzing"]
SCORERS: tuple[str, ...] = ("simulation", "embedding", "detection", "fuzzing")
LLM_SCORERS = ("detection", "fuzzing")


def score_feature(
    examples: FeatureExamples,
    explanation: str,
    shuffled: str,
    scorers: Sequence[str],
    *,
    backend: Backend | None = None,
    embedder: TextEmbedder | None = None,
    hard_negatives: bool = False,
    detection_config: DetectionConfig | None = None,
) -> dict[str, dict[str, float]]:
    """``{"score": {...}, "shuffled": {...}, "all_negative": {...}}``, one entry per metric."""
    contexts, labels = examples.scoring_contexts(hard=hard_negatives)
    out: dict[str, dict[str, float]] = {"score": {}, "shuffled": {}, "all_negative": {}}
    if len(set(labels.tolist())) < 2:
        return out  # nothing to separate: no activating (or no non-activating) window was held out
    texts = [explanation, shuffled]
    baseline = metrics.all_negative(labels)
    for scorer in scorers:
        if scorer == "simulation":
            _put(out, "simulation", simulation_scores(texts, contexts), 0.0)
        elif scorer == "embedding":
            if embedder is None:
                raise ValueError("The embedding scorer needs an embedder (saelab.autointerp.backends.load_embedder()).")
            _put(out, "embedding", embedding_scores(embedder, texts, contexts, labels), baseline.auroc)
        elif scorer in LLM_SCORERS:
            if backend is None:
                raise ValueError(f"The {scorer} scorer needs a backend (LocalBackend or OpenAIBackend).")
            p_yes = detection_probabilities(backend, texts, contexts, mode=scorer, labels=labels,  # type: ignore[arg-type]
                                            threshold=examples.threshold, config=detection_config)  # fmt: skip
            real, control = (detection_score(row, labels) for row in p_yes)
            for name, base in (("auroc", baseline.auroc), ("balanced_accuracy", baseline.balanced_accuracy),
                               ("accuracy", baseline.accuracy)):  # fmt: skip
                _put(out, f"{scorer}_{name}", np.array([getattr(real, name), getattr(control, name)]), base)
        else:
            raise ValueError(f"Unknown scorer {scorer!r}; valid: {list(SCORERS)}")
    return out


def _put(out: dict[str, dict[str, float]], name: str, pair: np.ndarray, all_negative: float) -> None:
    out["score"][name] = _plain(pair[0])
    out["shuffled"][name] = _plain(pair[1])
    out["all_negative"][name] = float(all_negative)


def _plain(value: Any) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")
