"""The LLM-free explainers on planted features (no model): a feature on " cat", a feature on
" York" only after " New", and a feature that never fires. Their explanations are scored by
simulation on held-out contexts, beside a shuffled control."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from saelab.autointerp.explainers.ngram import NgramConfig, NgramPatternExplainer
from saelab.autointerp.explainers.top_tokens import TopTokensConfig, TopTokensExplainer
from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.autointerp.patterns import Pattern, parse_patterns
from saelab.autointerp.scorers.simulation import simulation_score

FILLER = [f" w{i}" for i in range(60)]
WINDOW = 32


def make_context(tokens: list[str], acts: list[float], source: tuple[int, int]) -> Context:
    return Context(tuple(tokens), tuple(range(len(tokens))), tuple(acts), source)


def planted(rng: random.Random, source: int, inserts: list[str], fire, noise: float = 0.0) -> Context:
    """A window of random filler with the ``inserts`` token groups ("a|b" is two tokens) at
    random places, in order and never overlapping; ``fire(tokens, i)`` is the activation at i."""
    tokens = [rng.choice(FILLER) for _ in range(WINDOW)]
    segment = (WINDOW - 1) // max(1, len(inserts))
    for k, group in enumerate(inserts):
        parts = group.split("|")
        at = 1 + k * segment + rng.randrange(segment - len(parts) + 1)
        tokens[at : at + len(parts)] = parts
    acts = [fire(tokens, i) or (noise if noise and tokens[i] in FILLER else 0.0) for i in range(WINDOW)]
    return make_context(tokens, acts, (source, 0))


def on_cat(tokens, i):
    return 5.0 if tokens[i] == " cat" else 0.0


def on_new_york(tokens, i):
    return 5.0 if tokens[i] == " York" and i > 0 and tokens[i - 1] == " New" else 0.0


def cat_feature(seed: int = 0, noise: float = 0.0) -> FeatureExamples:
    rng = random.Random(seed)
    # Filler for the cat feature also holds " New", " York" and lone " York": a shuffled
    # York explanation then predicts something here, and must still score near 0.
    explain = [planted(rng, i, [" cat", " New| York"], on_cat, noise) for i in range(20)]
    positives = [planted(rng, 100 + i, [" cat", " York"], on_cat) for i in range(15)]
    negatives = [planted(rng, 200 + i, [" New| York", " dog"], on_cat) for i in range(15)]
    return FeatureExamples(1, "planted", 0.0, 0.01, 5.0, tuple(explain), tuple(positives), tuple(negatives))


def york_feature(seed: int = 1, lone: float = 0.0) -> FeatureExamples:
    """Fires (5.0) on " York" after " New"; ``lone`` on " York" anywhere else."""
    rng = random.Random(seed)

    def fire(tokens, i):
        return on_new_york(tokens, i) or (lone if tokens[i] == " York" else 0.0)

    # Top-activating windows also hold " York" without " New" (where it does not fire).
    explain = [planted(rng, i, [" New| York", " York", " York"], fire) for i in range(20)]
    positives = [planted(rng, 100 + i, [" New| York"], fire) for i in range(15)]
    negatives = [planted(rng, 200 + i, [" York", " New"], fire) for i in range(15)]
    return FeatureExamples(2, "planted", 0.0, 0.01, 5.0, tuple(explain), tuple(positives), tuple(negatives))


def never_fires() -> FeatureExamples:
    return FeatureExamples(3, "planted", 0.0, 0.0, 0.0)


def patterns_of(text: str) -> list[Pattern]:
    parsed = parse_patterns(text)
    assert parsed is not None, text
    return parsed


def held_out_score(examples: FeatureExamples, text: str) -> float:
    contexts, _ = examples.scoring_contexts()
    score = simulation_score(text, contexts)
    assert score.simulatable
    return score.correlation


EXPLAINERS = [TopTokensExplainer(), NgramPatternExplainer()]


@pytest.mark.parametrize("explainer", EXPLAINERS, ids=lambda e: e.name)
def test_cat_feature_is_explained_by_cat_and_simulates_well(explainer):
    examples = cat_feature()
    explanation = explainer.explain(examples)
    assert explanation.ok and explanation.feature == 1 and explanation.explainer == explainer.name
    assert patterns_of(explanation.text)[0] == Pattern((" cat",), 1.0)
    assert held_out_score(examples, explanation.text) > 0.9


def test_ngram_finds_the_bigram_that_top_tokens_cannot_see():
    examples = york_feature()
    ngram = NgramPatternExplainer().explain(examples)
    top = TopTokensExplainer().explain(examples)
    assert patterns_of(ngram.text) == [Pattern((" New", " York"), 1.0)]
    # Counting only where it fires, top_tokens never sees the lone " York"s that stay silent.
    assert patterns_of(top.text) == [Pattern((" York",), 1.0)]
    ngram_score, top_score = held_out_score(examples, ngram.text), held_out_score(examples, top.text)
    assert ngram_score > 0.99 and ngram_score > top_score + 0.2


def test_a_shuffled_explanation_scores_near_zero():
    york = york_feature()
    cat = cat_feature()
    for explainer in EXPLAINERS:
        shuffled = explainer.explain(york).text
        assert abs(held_out_score(cat, shuffled)) < 0.1
        assert held_out_score(cat, explainer.explain(cat).text) > 0.9


@pytest.mark.parametrize("explainer", EXPLAINERS, ids=lambda e: e.name)
def test_a_feature_that_never_fires_is_skipped_with_its_reason(explainer):
    explanation = explainer.explain(never_fires())
    assert explanation.text == "" and explanation.skipped == "never fires in the pass"
    assert not explanation.ok and explanation.feature == 3


def test_top_tokens_ignores_the_faint_tail_of_a_window():
    examples = cat_feature(noise=0.05)
    assert patterns_of(TopTokensExplainer().explain(examples).text) == [Pattern((" cat",), 1.0)]
    counted_tail = TopTokensExplainer(TopTokensConfig(min_fraction=0.0)).explain(examples)
    tail = patterns_of(counted_tail.text)
    assert len(tail) == 5 and tail[0] == Pattern((" cat",), 1.0) and all(p.weight == 0.01 for p in tail[1:])
    # The feature's own threshold also keeps the tail out, whatever the fraction.
    above_threshold = TopTokensExplainer(TopTokensConfig(min_fraction=0.0)).explain(replace(examples, threshold=0.1))
    assert patterns_of(above_threshold.text) == [Pattern((" cat",), 1.0)]


def test_top_tokens_keeps_a_bigram_whose_weight_differs_from_its_token():
    examples = york_feature(lone=1.0)  # " York" fires weakly alone, strongly after " New"
    text = TopTokensExplainer().explain(examples).text
    # Chance bigrams (a filler token twice before a lone " York") cover too few of its firings.
    assert patterns_of(text) == [
        Pattern((" York",), round((20 * 5.0 + 40 * 1.0) / 60 / 5.0, 2)),
        Pattern((" New", " York"), 1.0),
    ]
    unigram_only = TopTokensExplainer(TopTokensConfig(min_weight_gap=1.0)).explain(examples).text
    assert patterns_of(unigram_only) == [Pattern((" York",), 0.47)]
    assert held_out_score(examples, text) > 0.95 > held_out_score(examples, unigram_only) + 0.1


def test_top_tokens_lists_at_most_max_patterns_by_coverage():
    rng = random.Random(3)
    words = [" a", " b", " c", " d"]
    explain = []
    for i in range(20):
        # " a" in every window, " b" in 3 of 4, " c" in half, " d" in a quarter.
        inserts = [w for k, w in enumerate(words) if i % 4 < 4 - k]
        explain.append(planted(rng, i, inserts, lambda t, j: 2.0 if t[j] in words else 0.0))
    examples = FeatureExamples(4, "planted", 0.0, 0.1, 2.0, tuple(explain))
    patterns = patterns_of(TopTokensExplainer(TopTokensConfig(max_patterns=2)).explain(examples).text)
    assert [p.tokens for p in patterns] == [(" a",), (" b",)]


def test_ngram_keeps_several_peaks_and_ranks_them_by_activation_covered():
    rng = random.Random(4)
    fire = {" cat": 4.0, " dog": 2.0}
    explain = [planted(rng, i, [" cat" if i % 3 else " dog"], lambda t, j: fire.get(t[j], 0.0)) for i in range(12)]
    examples = FeatureExamples(5, "planted", 0.0, 0.1, 4.0, tuple(explain))
    assert patterns_of(NgramPatternExplainer().explain(examples).text) == [
        Pattern((" cat",), 1.0),
        Pattern((" dog",), 0.5),
    ]


def test_ngram_gives_no_pattern_when_no_context_up_to_max_n_keeps_the_peak():
    short = NgramPatternExplainer(NgramConfig(max_n=1)).explain(york_feature())
    assert short.ok and patterns_of(short.text) == []
    assert simulation_score(short.text, york_feature().scoring_contexts()[0]).correlation == 0.0


def test_ngram_keep_decides_whether_the_unigram_suffices():
    # The lone " York"s bring the unigram's mean to a third of the peak: enough for keep=0.3.
    loose = NgramPatternExplainer(NgramConfig(keep=0.3)).explain(york_feature())
    assert patterns_of(loose.text) == [Pattern((" York",), 0.33)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: TopTokensConfig(max_patterns=0),
        lambda: TopTokensConfig(min_fraction=1.5),
        lambda: TopTokensConfig(min_bigram_count=0),
        lambda: TopTokensConfig(min_bigram_share=2.0),
        lambda: TopTokensConfig(min_weight_gap=-0.1),
        lambda: NgramConfig(max_n=0),
        lambda: NgramConfig(keep=0.0),
        lambda: NgramConfig(max_patterns=0),
    ],
)
def test_bad_configs_are_refused(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_configs_round_trip_through_json():
    assert TopTokensConfig.from_json(TopTokensConfig(max_patterns=3).to_json()) == TopTokensConfig(max_patterns=3)
    assert NgramConfig.from_json(NgramConfig(keep=0.7).to_json()) == NgramConfig(keep=0.7)
