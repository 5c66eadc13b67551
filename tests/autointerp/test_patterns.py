"""The token-pattern text format: exact round trips for awkward token strings, free text told
apart, and what a list of patterns predicts token by token."""

from __future__ import annotations

import random

import numpy as np
import pytest

from saelab.autointerp.patterns import Pattern, format_patterns, parse_patterns, simulate

AWKWARD = [
    '"', "\\", "\n", "\r\n", "\t", ";", "; ", "(", ")", "(0.50)", ' (1.00); "', '"; "x" (0.3)',
    "", " ", "  ", "é", " naïve", "日本語", "\ufffd", "🙂", "\\n", "fires on:", "\x00", "\u2028",
]  # fmt: skip


def test_format_reads_like_the_documented_example():
    patterns = [Pattern((" def",), 1.0), Pattern((" import", " numpy"), 0.62), Pattern(("\n", "#"), 0.31)]
    assert format_patterns(patterns) == 'fires on: " def" (1.00); " import" " numpy" (0.62); "\\n" "#" (0.31)'


@pytest.mark.parametrize("token", AWKWARD, ids=repr)
def test_round_trip_is_exact_for_awkward_tokens(token):
    patterns = [Pattern((token,), 0.5), Pattern((" a", token, token), 1.0), Pattern((token, ";"), 0.07)]
    assert parse_patterns(format_patterns(patterns)) == patterns


def test_round_trip_is_exact_for_random_tokens_and_unrounded_weights():
    rng = random.Random(0)
    alphabet = list('ab ;()"\\\n\t,:é日\ufffd0.') + ["fires on:"]
    for _ in range(200):
        patterns = [
            Pattern(
                tuple("".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(1, 4))),
                rng.choice([1.0, 0.01, round(rng.uniform(0.01, 1), 2), rng.uniform(1e-6, 1)]),
            )
            for _ in range(rng.randint(1, 5))
        ]
        assert parse_patterns(format_patterns(patterns)) == patterns


def test_non_ascii_is_written_as_is_for_a_human_reader():
    assert format_patterns([Pattern((" café",), 1.0)]) == 'fires on: " café" (1.00)'


def test_no_pattern_round_trips_as_nothing():
    assert format_patterns([]) == "fires on: nothing"
    assert parse_patterns("fires on: nothing") == []


def test_parse_tolerates_spacing_around_the_parts():
    assert parse_patterns('  fires on:" New"   " York"(0.9) ;" cat" ( 1 )  ') == [
        Pattern((" New", " York"), 0.9),
        Pattern((" cat",), 1.0),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Fires on the word 'cat' in stories about pets.",
        "",
        "fires on: cats and dogs",
        'fires on: " cat"',  # no weight
        'fires on: " cat" (1.5)',  # weight out of (0, 1]
        'fires on: " cat" (0)',
        "fires on: (0.5)",  # no token
        'fires on: " cat" (0.5) " dog" (0.5)',  # no separator
        'fires on: " cat" (0.5);',  # dangling separator
        'fires on: " cat" (0.5) and more',
        'fires on: " cat (0.5)',  # unterminated string
        'fires on: " cat" (-0.5)',
    ],
)
def test_text_not_in_the_format_parses_to_none(text):
    assert parse_patterns(text) is None


@pytest.mark.parametrize("weight", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_pattern_weight_must_be_in_zero_one(weight):
    with pytest.raises(ValueError, match="weight"):
        Pattern((" a",), weight)


def test_pattern_needs_tokens():
    with pytest.raises(ValueError, match="token"):
        Pattern((), 0.5)
    assert Pattern([" a", " b"], 1).tokens == (" a", " b")  # type: ignore[arg-type]


def test_simulate_puts_the_weight_on_the_last_token_only():
    out = simulate([Pattern((" New", " York"), 0.8)], [" in", " New", " York", " York", " New"])
    np.testing.assert_array_equal(out, np.array([0, 0, 0.8, 0, 0], dtype=np.float32))
    assert out.dtype == np.float32 and out.shape == (5,)


def test_simulate_longest_match_wins_then_larger_weight():
    patterns = [Pattern((" York",), 0.1), Pattern((" New", " York"), 0.9), Pattern((" New", " York"), 0.5)]
    out = simulate(patterns, [" York", " New", " York", " old", " York"])
    np.testing.assert_allclose(out, [0.1, 0, 0.9, 0, 0.1])


def test_simulate_does_not_match_a_pattern_longer_than_the_text_so_far():
    out = simulate([Pattern((" a", " b", " c"), 1.0)], [" b", " c", " a", " b", " c"])
    np.testing.assert_allclose(out, [0, 0, 0, 0, 1.0])


def test_simulate_handles_no_patterns_and_no_tokens():
    np.testing.assert_array_equal(simulate([], [" a", " b"]), np.zeros(2))
    assert simulate([Pattern((" a",), 1.0)], []).shape == (0,)


def test_a_parsed_text_simulates_like_its_patterns():
    patterns = [Pattern(('"', "\n"), 0.4), Pattern((";",), 1.0)]
    tokens = ['"', "\n", ";", "\n"]
    parsed = parse_patterns(format_patterns(patterns))
    assert parsed is not None
    np.testing.assert_array_equal(simulate(parsed, tokens), simulate(patterns, tokens))
