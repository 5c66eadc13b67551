"""saelab.analysis.rankings on hand-made activations whose right answers are known: strongest,
frequent, selective, composite and concept search, each defined precisely (seed 004 once
reported one feature as both the most frequent and the most selective)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab import analysis

# 6 texts x 5 features, each built to win exactly one ranking:
#   f0 fires weakly on every text      -> most frequent
#   f1 fires once, strongly (5)        -> most selective
#   f2 fires on half the texts, max 9  -> strongest
#   f3 never fires                     -> last everywhere, never selective (min_active)
#   f4 fires on every text, 0.5        -> ties f0 on frequency, loses on mean_when_active
HAND = np.array(
    [
        [1.0, 0.0, 2.0, 0.0, 0.5],
        [1.0, 0.0, 0.0, 0.0, 0.5],
        [1.0, 5.0, 4.0, 0.0, 0.5],
        [1.0, 0.0, 9.0, 0.0, 0.5],
        [1.0, 0.0, 0.0, 0.0, 0.5],
        [1.0, 0.0, 0.0, 0.0, 0.5],
    ],
    dtype=np.float32,
)


def test_strongest_hand_made():
    frame = analysis.strongest(HAND, top=3)
    assert list(frame.columns) == ["rank", "feature", "max_activation", "argmax_text", "mean_activation", "frequency"]
    assert frame.feature.tolist() == [2, 1, 0]
    assert frame["rank"].tolist() == [1, 2, 3]
    row = frame.iloc[0]
    assert (row.max_activation, row.argmax_text) == (9.0, 3)
    assert row.mean_activation == pytest.approx(15 / 6)
    assert row.frequency == pytest.approx(0.5)


def test_frequent_hand_made_ties_broken_by_strength():
    frame = analysis.frequent(HAND, top=5)
    assert list(frame.columns) == ["rank", "feature", "frequency", "n_active", "mean_when_active"]
    assert frame.feature.tolist() == [0, 4, 2, 1, 3]  # f0 and f4 tie at 1.0; f0 is stronger
    assert frame.frequency.tolist() == pytest.approx([1, 1, 0.5, 1 / 6, 0])
    assert frame.n_active.tolist() == [6, 6, 3, 1, 0]
    assert frame.mean_when_active.tolist() == pytest.approx([1.0, 0.5, 5.0, 5.0, 0.0])
    # A higher threshold changes what counts as active.
    assert analysis.frequent(HAND, top=1, threshold=0.75).feature.tolist() == [0]
    assert analysis.frequent(HAND, top=5, threshold=0.75).set_index("feature").loc[4, "n_active"] == 0


def test_selective_and_frequent_differ_seed_004_bug():
    # Seed 004 reported one feature as both "most frequent" and "most selective".
    most_frequent = analysis.frequent(HAND, top=1).feature.item()
    sel = analysis.selective(HAND, top=5, max_frequency=0.2)
    assert list(sel.columns) == ["rank", "feature", "frequency", "n_active", "mean_when_active", "max_activation"]
    assert sel.feature.tolist() == [1]  # f2 fires on half the texts; f3 never fires
    assert most_frequent == 0 and most_frequent not in sel.feature.tolist()
    # Allowing half the texts admits f2, which is stronger when active than f1 (5.0 vs 5.0,
    # tie broken by max activation 9 > 5).
    assert analysis.selective(HAND, top=5, max_frequency=0.5).feature.tolist() == [2, 1]


def test_selective_excludes_frequent_feature_even_when_it_is_strongest_when_active():
    # The frequent feature is also the strongest when it fires: only max_frequency keeps it out.
    x = np.zeros((10, 3), dtype=np.float32)
    x[:, 0] = 8.0
    x[2, 1] = 3.0
    x[[4, 5], 2] = 1.0
    assert analysis.frequent(x, top=1).feature.item() == 0
    sel = analysis.selective(x, top=3, max_frequency=0.2)
    assert sel.feature.tolist() == [1, 2]
    assert analysis.selective(x, top=3, max_frequency=0.2, min_active=2).feature.tolist() == [2]
    empty = analysis.selective(x, top=3, max_frequency=0.05)
    assert empty.empty and "mean_when_active" in empty.columns


def test_composite_is_frequency_times_strength_and_the_mean():
    frame = analysis.composite(HAND, top=5)
    assert list(frame.columns) == ["rank", "feature", "score", "frequency", "mean_when_active"]
    by_feature = frame.set_index("feature")
    np.testing.assert_allclose(by_feature.score.sort_index(), HAND.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(by_feature.score, by_feature.frequency * by_feature.mean_when_active)
    assert frame.feature.tolist()[:2] == [2, 0]  # 15/6 = 2.5 > 1.0


def test_torch_and_numpy_inputs_agree():
    pd.testing.assert_frame_equal(analysis.strongest(torch.from_numpy(HAND)), analysis.strongest(HAND))
    pd.testing.assert_frame_equal(
        analysis.frequent(torch.from_numpy(HAND).to(torch.bfloat16)), analysis.frequent(HAND)
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros(3), "2-D"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[1.0, np.inf]]), "NaN or inf"),
    ],
)
def test_bad_feats_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        analysis.strongest(bad)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="top must be an integer >= 1"):
        analysis.frequent(HAND, top=0)
    with pytest.raises(ValueError, match="max_frequency"):
        analysis.selective(HAND, max_frequency=0)
    with pytest.raises(ValueError, match="min_active"):
        analysis.selective(HAND, min_active=0)


def test_concept_search_weights_strength_and_subtracts_background():
    examples = np.array([[3.0, 1.0, 0.0, 2.0], [3.0, 1.0, 0.0, 0.0]])
    background = np.array([[3.0, 0.0, 0.0, 0.0], [3.0, 0.0, 1.0, 0.0]])
    plain = analysis.concept_search(examples, top=4)
    assert list(plain.columns) == [
        "rank", "feature", "score", "mean_on_examples", "frac_examples_active", "mean_background",
    ]  # fmt: skip
    assert plain.feature.tolist() == [0, 1, 3, 2]
    assert plain.score.tolist() == pytest.approx([3.0, 1.0, 0.5, 0.0])  # f3: mean 1 x half the examples
    vs_bg = analysis.concept_search(examples, background, top=4)
    assert vs_bg.feature.tolist()[:2] == [1, 3]  # f0 fires everywhere -> score 0
    assert vs_bg.set_index("feature").loc[2, "score"] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="same SAE"):
        analysis.concept_search(examples, background[:, :3])
