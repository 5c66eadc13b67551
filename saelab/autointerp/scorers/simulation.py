"""Simulation scoring without a language model: how well an explanation's text predicts the
feature's activation on every token of held-out contexts.

A token-pattern explanation (:mod:`saelab.autointerp.patterns`) predicts an activation per token by
itself. The score is the Pearson correlation between those predictions and the true
activations, pooled over all tokens of all scoring contexts, activating and non-activating
together: the "all at once" score of Bills et al. 2023 ("Language models can explain neurons
in language models"), where the simulator was an LLM and here is :func:`patterns.simulate`.
Pooling rewards an explanation for predicting *where* in a text the feature fires and for
predicting silence on the random contexts.

Explanations in any other format (an LLM's free text) are not simulatable here: their score
is NaN with ``simulatable=False``, not an error. The same scorer takes any pattern text, so
another feature's explanation (a shuffled control) is scored exactly like the real one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from saelab.autointerp.feature_examples import Context
from saelab.autointerp.patterns import Pattern, parse_patterns, simulate


class SimulationScore(NamedTuple):
    correlation: float
    """Pearson correlation of predicted and true activations over all pooled tokens: NaN when
    the explanation is not simulatable or the true activations are constant, 0.0 when the
    prediction is constant."""
    n_tokens: int
    """Tokens pooled over the scoring contexts."""
    simulatable: bool
    """False when the text is not in the token-pattern format (e.g. an LLM's explanation)."""


def simulation_score(explanation_text: str, contexts: Sequence[Context]) -> SimulationScore:
    """Score one explanation text on ``contexts`` (e.g. ``FeatureExamples.scoring_contexts()[0]``)."""
    truth = _pooled_truth(contexts)
    patterns = parse_patterns(explanation_text)
    if patterns is None:
        return SimulationScore(math.nan, truth.size, simulatable=False)
    return SimulationScore(_correlation(_predict(patterns, contexts), truth), truth.size, simulatable=True)


def simulation_scores(explanations: Sequence[str], contexts: Sequence[Context]) -> Float[np.ndarray, " n_explanations"]:
    """The correlation of each explanation text on the same contexts (NaN where not simulatable):
    a feature's real explanation and its shuffled controls in one go."""
    truth = _pooled_truth(contexts)
    out = np.full(len(explanations), np.nan, dtype=np.float64)
    for i, text in enumerate(explanations):
        patterns = parse_patterns(text)
        if patterns is not None:
            out[i] = _correlation(_predict(patterns, contexts), truth)
    return out


def _pooled_truth(contexts: Sequence[Context]) -> Float[np.ndarray, " n_tokens"]:
    if not any(c.tokens for c in contexts):
        raise ValueError(f"Simulation scoring needs contexts with tokens, got {len(contexts)} context(s) and none")
    return np.concatenate([np.asarray(c.acts, dtype=np.float64) for c in contexts])


def _predict(patterns: list[Pattern], contexts: Sequence[Context]) -> Float[np.ndarray, " n_tokens"]:
    return np.concatenate([simulate(patterns, c.tokens).astype(np.float64) for c in contexts])


def _correlation(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Pearson correlation, with the two degenerate cases decided rather than left to NaN."""
    if np.ptp(truth) == 0:
        # Nothing varies to be predicted (no activating token in the set): no score can tell.
        return math.nan
    if np.ptp(predicted) == 0:
        # An explanation that predicts the same everywhere (no pattern ever matches) explains
        # nothing: score it as uncorrelated rather than undefined, so it ranks below any
        # explanation that predicts something right.
        return 0.0
    p, t = predicted - predicted.mean(), truth - truth.mean()
    return float(np.dot(p, t) / math.sqrt(np.dot(p, p) * np.dot(t, t)))
