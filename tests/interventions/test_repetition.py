"""Repetition beside perplexity: a loop reads as degenerate, fluent text does not, and the
edges (empty, shorter than n, a broken baseline) say what they are."""

from __future__ import annotations

import math

import pytest
import torch

from saelab.interventions.repetition import (
    RepetitionRule,
    distinct_n,
    repeated_ngram_share,
    repetition_scores,
)

# What steering math feature #949 at 8x wrote after "Yesterday, when I got home," (issue 22).
MATH_LOOP = " = = = = = = = = = = = = = = = ="
FLUENT = [
    " I found my sister in the kitchen, cooking dinner for the whole family while the radio played.",
    " the dog ran to the door and barked until I gave him a treat and took him for a walk.",
    " my phone rang: an old friend wanted to meet for coffee on Saturday near the station.",
]


@pytest.fixture(scope="module")
def ids(smollm2_tokenizer):
    def encode(text: str) -> list[int]:
        return smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]

    return encode


def test_distinct_n_counts_unique_ngrams_over_all_ngrams():
    assert distinct_n([1, 2, 3, 4], 2) == 1.0
    assert distinct_n([1, 2, 1, 2, 1], 2) == pytest.approx(2 / 4)  # (1,2) (2,1) (1,2) (2,1)
    assert distinct_n([7, 7, 7, 7], 1) == pytest.approx(1 / 4)
    assert distinct_n(torch.tensor([5, 6, 5, 6]), 2) == pytest.approx(2 / 3)


def test_repeated_share_is_the_share_of_ngrams_seen_before():
    ids = [1, 2, 1, 2, 3]  # (1,2) (2,1) (1,2)* (2,3): one of four already occurred
    assert repeated_ngram_share(ids, 2) == pytest.approx(1 / 4)
    assert repeated_ngram_share(ids, 2) == pytest.approx(1 - distinct_n(ids, 2))


def test_texts_shorter_than_n_have_no_score():
    assert math.isnan(distinct_n([], 2))
    assert math.isnan(distinct_n([3], 2))
    assert math.isnan(repeated_ngram_share([3], 2))
    assert distinct_n([3, 4], 2) == 1.0
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        distinct_n([1, 2], 0)


def test_the_math_loop_scores_far_below_fluent_text_with_the_real_tokenizer(ids):
    loop = ids(MATH_LOOP)
    assert len(set(loop)) == 1  # SmolLM2 spells each " =" as one token: a loop of one bigram
    assert distinct_n(loop, 2) == pytest.approx(1 / (len(loop) - 1))
    assert all(distinct_n(ids(text), 2) > 0.95 for text in FLUENT)


def test_a_hand_made_repetitive_text_scores_below_a_normal_sentence(ids):
    cat = ids(" the cat the cat the cat the cat the cat the cat the cat the cat")
    scores = repetition_scores([cat, ids(FLUENT[0])], n=2)
    assert scores.distinct[0] < 0.25 < 0.95 < scores.distinct[1]
    torch.testing.assert_close(scores.repeated, 1 - scores.distinct)
    assert scores.n_tokens.tolist() == [len(cat), len(ids(FLUENT[0]))] and scores.n == 2


def test_scores_keep_nan_rows_and_the_mean_skips_them():
    scores = repetition_scores([[1, 2, 3], [], [4], [1, 1, 1]], n=2)
    assert scores.distinct[0] == 1.0 and scores.distinct[3] == 0.5
    assert scores.distinct[1:3].isnan().all() and scores.repeated[1:3].isnan().all()
    assert scores.mean_distinct == pytest.approx(0.75)
    assert math.isnan(repetition_scores([[1], []]).mean_distinct)
    assert math.isnan(repetition_scores([]).mean_distinct)
    with pytest.raises(TypeError, match="token id lists"):
        repetition_scores(["the cat the cat"])


def test_the_rule_flags_the_math_loop_against_a_fluent_baseline(ids):
    rule = RepetitionRule()
    baseline = rule.scores([ids(text) for text in FLUENT]).mean_distinct
    steered = rule.scores([ids(MATH_LOOP)] * 3).mean_distinct
    assert rule.degenerate(steered, baseline)
    assert not rule.degenerate(rule.scores([ids(FLUENT[1])]).mean_distinct, baseline)
    assert rule.ratio(steered, baseline) < 0.1


def test_the_rule_is_relative_to_the_baseline_with_its_threshold_inclusive():
    rule = RepetitionRule(min_ratio=0.5)
    assert not rule.degenerate(0.5, 1.0)  # exactly half still passes
    assert rule.degenerate(0.49, 1.0)
    assert not rule.degenerate(0.2, 0.3)  # a repetitive prompt sets a repetitive norm


def test_an_arm_without_text_is_degenerate_and_a_broken_baseline_raises():
    rule = RepetitionRule()
    assert math.isnan(rule.ratio(math.nan, 0.9)) and rule.degenerate(math.nan, 0.9)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        rule.degenerate(0.5, math.nan)
    with pytest.raises(ValueError, match="never 0"):
        rule.degenerate(0.5, 0.0)
    with pytest.raises(ValueError, match=r"arm_distinct must be a distinct-n in \[0, 1\]"):
        rule.degenerate(1.5, 0.9)


def test_the_rule_validates_and_round_trips():
    with pytest.raises(ValueError, match="n must be an integer >= 1.*min_ratio must be in"):
        RepetitionRule(n=0, min_ratio=0.0)
    rule = RepetitionRule(n=3, min_ratio=0.4)
    assert RepetitionRule.from_json(rule.to_json()) == rule
    assert rule.scores([[1, 2, 3, 1, 2, 3]]).n == 3
