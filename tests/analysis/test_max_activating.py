"""saelab.analysis.max_activating: where a feature fires, token by token. Streamed top examples
equal a brute-force search on the tiny model; token profiles and a text's top features are
checked on hand-made per-token features."""

from __future__ import annotations

import pytest
import torch

import saelab
from saelab import analysis
from saelab.analysis.max_activating import rank_text_features
from tests.analysis._helpers import TEXTS
from tests.extract._helpers import hand_made_per_token

FEATURES = [0, 5, 17, 63]


def brute_force_top(per_token, feature: int, k: int) -> list[tuple[float, int, int]]:
    """(value, text, position) of the k largest active tokens, earliest first on ties."""
    entries = [
        (float(v), t, p)
        for t in range(per_token.n_texts)
        for p, v in enumerate(per_token.dense(t)[:, feature].tolist())
        if v > 0
    ]
    return sorted(entries, key=lambda e: (-e[0], e[1], e[2]))[:k]


def test_streamed_top_examples_equal_brute_force(tiny_model, sae):
    # batch_size=1 on both sides: every text runs alone, so values are bit-identical.
    everything = saelab.extract_per_token(tiny_model, sae, TEXTS, batch_size=1)
    k, window = 4, (3, 2)
    streamed = analysis.top_examples(
        tiny_model, sae, (t for t in TEXTS), FEATURES, top=k, window=window, batch_size=1, chunk_size=2, progress=False
    )
    assert list(streamed.frame.columns) == [
        "feature", "rank", "value", "text_index", "position", "token",
        "context_tokens", "context_values", "left", "right",
    ]  # fmt: skip
    n_checked = 0
    for f in FEATURES:
        rows = streamed.for_feature(f)
        expected = brute_force_top(everything, f, k)
        assert [(r.value, r.text_index, r.position) for r in rows.itertuples()] == expected
        assert rows["rank"].tolist() == list(range(1, len(expected) + 1))
        for r in rows.itertuples():
            tokens, values = everything.tokens[r.text_index], everything.dense(r.text_index)[:, f]
            lo, hi = r.position - r.left, r.position + r.right + 1
            assert r.left == min(window[0], r.position) and r.right == min(window[1], len(tokens) - 1 - r.position)
            assert r.context_tokens == tokens[lo:hi] and r.token == tokens[r.position]
            assert r.context_values == values[lo:hi].tolist()
            assert r.context_values[r.left] == r.value
            n_checked += 1
    assert n_checked >= 8  # the random SAE really fires on these texts
    # Chunking does not change the answer.
    whole = analysis.top_examples(tiny_model, sae, TEXTS, FEATURES, top=k, window=window, batch_size=1, progress=False)
    assert whole.frame.drop(columns=["context_tokens", "context_values"]).equals(
        streamed.frame.drop(columns=["context_tokens", "context_values"])
    )
    # From per-token features already at hand: the same examples, with no model pass.
    at_hand = analysis.top_examples_in(everything, FEATURES, top=k, window=window)
    assert at_hand.frame.equals(streamed.frame)


def test_top_examples_rejects_bad_input(tiny_model, sae):
    with pytest.raises(ValueError, match="out of range"):
        analysis.top_examples(tiny_model, sae, TEXTS, [64], progress=False)
    with pytest.raises(ValueError, match="texts is empty"):
        analysis.top_examples(tiny_model, sae, iter([]), [1], progress=False)
    with pytest.raises(ValueError, match="window"):
        analysis.top_examples(tiny_model, sae, TEXTS, [1], window=(-1, 2), progress=False)
    with pytest.raises(ValueError, match="out of range"):
        analysis.top_examples_in(saelab.extract_per_token(tiny_model, sae, TEXTS[:1]), [64])
    result = analysis.top_examples(tiny_model, sae, TEXTS[:1], [1], top=1, progress=False)
    with pytest.raises(ValueError, match="not requested"):
        result.for_feature(2)


def test_token_profile_groups_by_token_string():
    from saelab.extract import PerTokenFeatures

    # Two texts: "a + b" and "+ c +". Feature 1 fires on every "+" (2, 4, 6) and once on "a" (1).
    per_token = PerTokenFeatures(
        tokens=[["a", " +", " b"], [" +", " c", " +"]],
        token_ids=[[1, 2, 3], [2, 4, 2]],
        d_sae=3,
        row_ptr=torch.tensor([0, 2, 3, 3, 4, 5, 6]),
        feature_idx=torch.tensor([1, 0, 1, 1, 0, 1]),
        values=torch.tensor([1.0, 9.0, 2.0, 4.0, 9.0, 6.0]),
        text_row_start=torch.tensor([0, 3, 6]),
    )
    profile = analysis.token_profile(per_token, 1, top=5)
    assert profile.token.tolist() == [" +", "a"]
    plus = profile.iloc[0]
    assert (plus.n_active, plus.n_total, plus.frac_active) == (3, 3, 1.0)
    assert plus.total == pytest.approx(12.0) and plus.mean_when_active == pytest.approx(4.0)
    assert plus.share == pytest.approx(12.0 / 13.0)
    assert profile.iloc[1].share == pytest.approx(1.0 / 13.0)
    # Feature 0 fires on "a" and " c" only (value 9 each): ties broken by first appearance.
    assert analysis.token_profile(per_token, 0).token.tolist() == ["a", " c"]
    with pytest.raises(ValueError, match="out of range"):
        analysis.token_profile(per_token, 3)


def test_text_max_and_rank_text_features_known_answers():
    per_token = hand_made_per_token()
    assert per_token.text_max(2).tolist() == [5.0, 1.0]
    assert per_token.text_max(1).tolist() == [0.0, 3.0]
    ranked = rank_text_features(per_token, top=5)  # text 0: feature 2 (5.0), feature 0 (1.0)
    assert ranked["feature"].tolist() == [2, 0]
    assert ranked["rank"].tolist() == [1, 2]
    assert ranked["max_activation"].tolist() == [5.0, 1.0]
    assert ranked["mean_activation"].tolist() == [2.5, 0.5]
    assert ranked["n_tokens_active"].tolist() == [1, 1]
    assert rank_text_features(per_token, top=1)["feature"].tolist() == [2]
