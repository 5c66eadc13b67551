"""The simulation scorer on hand-made contexts with known correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saelab.autointerp.feature_examples import Context
from saelab.autointerp.patterns import Pattern, format_patterns, simulate
from saelab.autointerp.scorers.simulation import SimulationScore, simulation_score, simulation_scores


def context(words: str, acts: list[float], source: int) -> Context:
    tokens = tuple(" " + w for w in words.split())
    return Context(tokens, tuple(range(len(tokens))), tuple(acts), (source, 0))


# The feature fires on " York" after " New" (4.0), weakly on a lone " York" (1.0).
CONTEXTS = [
    context("I love New York", [0, 0, 0, 4.0], 0),
    context("York is old", [1.0, 0, 0], 1),
    context("new things in New York today", [0, 0, 0, 0, 4.0, 0], 2),
    context("a random context", [0, 0, 0], 3),  # a non-activating context, pooled with the rest
]
TRUTH = np.concatenate([c.activations() for c in CONTEXTS]).astype(np.float64)


def text(*patterns: Pattern) -> str:
    return format_patterns(list(patterns))


def test_an_exact_explanation_scores_one_over_all_pooled_tokens():
    score = simulation_score(text(Pattern((" York",), 0.25), Pattern((" New", " York"), 1.0)), CONTEXTS)
    assert isinstance(score, SimulationScore)
    assert score.correlation == pytest.approx(1.0) and score.n_tokens == 16 and score.simulatable


def test_the_correlation_is_pearson_over_the_pooled_tokens():
    patterns = [Pattern((" York",), 0.9), Pattern((" old",), 0.3)]
    predicted = np.concatenate([simulate(patterns, c.tokens) for c in CONTEXTS])
    expected = np.corrcoef(predicted, TRUTH)[0, 1]
    assert simulation_score(text(*patterns), CONTEXTS).correlation == pytest.approx(expected)
    assert 0 < expected < 1


def test_predicting_the_wrong_tokens_scores_below_zero():
    assert simulation_score(text(Pattern((" in",), 1.0), Pattern((" I",), 1.0)), CONTEXTS).correlation < 0


def test_free_text_is_not_simulatable_and_scores_nan_without_error():
    score = simulation_score("Fires on the second word of the name of a big city.", CONTEXTS)
    assert not score.simulatable and math.isnan(score.correlation) and score.n_tokens == 16


EVERY_TOKEN = [Pattern((t,), 0.5) for t in sorted({t for c in CONTEXTS for t in c.tokens})]


@pytest.mark.parametrize(
    "patterns", [[], [Pattern((" Paris",), 1.0)], EVERY_TOKEN], ids=["nothing", "no match", "every token"]
)
def test_a_prediction_that_never_varies_scores_zero(patterns):
    score = simulation_score(text(*patterns), CONTEXTS)
    assert score.simulatable and score.correlation == 0.0


def test_constant_true_activations_leave_the_score_undefined():
    silent = [context("New York again", [0, 0, 0], 9)]
    assert math.isnan(simulation_score(text(Pattern((" York",), 1.0)), silent).correlation)


def test_no_tokens_to_score_on_is_an_error():
    with pytest.raises(ValueError, match="contexts with tokens"):
        simulation_score(text(Pattern((" a",), 1.0)), [])


def test_scores_many_explanations_at_once_like_one_at_a_time():
    texts = [
        text(Pattern((" New", " York"), 1.0)),
        text(Pattern((" York",), 1.0)),
        "a city name",
        text(),
        text(Pattern((" random",), 1.0)),
    ]
    scores = simulation_scores(texts, CONTEXTS)
    assert scores.shape == (5,) and scores.dtype == np.float64
    one_by_one = [simulation_score(t, CONTEXTS).correlation for t in texts]
    # Batched and one-by-one correlations agree to rounding (NaN where a simulation is constant).
    np.testing.assert_allclose(scores, np.array(one_by_one), rtol=1e-12, atol=0)
    assert math.isnan(scores[2]) and scores[3] == 0.0 and scores[0] > scores[1] > 0 > scores[4]
