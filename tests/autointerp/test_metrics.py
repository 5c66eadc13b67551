"""The scorer statistics on planted cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from saelab.autointerp.scorers.metrics import (
    Baseline,
    accuracy,
    all_negative,
    auroc,
    balanced_accuracy,
    bootstrap_mean_ci,
    median_margin,
)


def test_auroc_is_one_for_perfect_separation_and_zero_reversed():
    labels = [1, 1, 0, 0, 0]
    assert auroc(labels, [0.9, 0.8, 0.1, 0.2, 0.3]) == 1.0
    assert auroc(labels, [0.1, 0.2, 0.8, 0.9, 0.7]) == 0.0


def test_auroc_is_half_when_all_scores_tie():
    assert auroc([1, 0, 0, 1, 0], [0.3] * 5) == 0.5


def test_auroc_counts_a_tie_as_half_a_win():
    # Pairs (pos, neg): 2>1 win, 2=2 tie, 3>1 win, 3>2 win -> (3 + 0.5) / 4.
    assert auroc([1, 1, 0, 0], [2.0, 3.0, 1.0, 2.0]) == pytest.approx(3.5 / 4)


def test_auroc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert auroc(labels, scores) == pytest.approx(expected)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1]])
def test_auroc_needs_both_classes(labels):
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        auroc(labels, np.arange(len(labels), dtype=float))


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        auroc([1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auroc([1, 0], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        auroc([2, 0], [0.1, 0.2])


def test_always_no_has_balanced_accuracy_half_but_accuracy_the_negative_share():
    labels = [1, 1, 0, 0, 0, 0, 0]  # the known trap: 2 positives, 5 negatives
    never = [0] * 7
    assert accuracy(labels, never) == pytest.approx(5 / 7)  # 0.71 for saying nothing
    assert balanced_accuracy(labels, never) == 0.5
    assert balanced_accuracy(labels, [1] * 7) == 0.5


def test_balanced_accuracy_is_the_mean_of_the_two_rates():
    labels = [1, 1, 0, 0, 0, 0]
    predicted = [1, 0, 0, 0, 0, 1]  # TPR 1/2, TNR 3/4
    assert balanced_accuracy(labels, predicted) == pytest.approx((0.5 + 0.75) / 2)
    assert accuracy(labels, predicted) == pytest.approx(4 / 6)
    assert balanced_accuracy(labels, labels) == 1.0


def test_all_negative_baseline_is_computed_from_the_labels():
    base = all_negative([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])  # 2 positives, 10 negatives
    assert isinstance(base, Baseline)
    assert base.accuracy == pytest.approx(10 / 12)
    assert base.balanced_accuracy == 0.5
    assert base.auroc == 0.5
    assert all_negative([1, 0, 0, 0, 0, 1, 1]).accuracy == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="no positive"):
        all_negative([0, 0, 0])


def test_median_margin_ci_covers_a_clear_planted_shift_and_excludes_zero():
    rng = np.random.default_rng(1)
    controls = rng.uniform(0.4, 0.6, 200)
    scores = controls + 0.2 + rng.normal(0, 0.05, 200)
    out = median_margin(scores, controls, n_boot=1000, seed=0)
    assert out.low <= 0.2 <= out.high
    assert out.low > 0
    assert out.median == pytest.approx(0.2, abs=0.02)
    assert out.share_positive == 1.0
    assert (out.n_scored, out.n_dropped) == (200, 0)


def test_median_margin_ci_covers_zero_without_a_shift():
    rng = np.random.default_rng(2)
    controls = rng.uniform(0.4, 0.6, 200)
    out = median_margin(controls + rng.normal(0, 0.05, 200), controls)
    assert out.low < 0 < out.high
    assert 0.35 < out.share_positive < 0.65


def test_median_margin_drops_and_counts_nan_features():
    scores = np.array([0.9, np.nan, 0.8, 0.7, 0.6])
    controls = np.array([0.5, 0.5, np.nan, 0.5, 0.7])
    out = median_margin(scores, controls, n_boot=200)
    assert (out.n_scored, out.n_dropped) == (3, 2)
    assert np.isnan(out.margins[[1, 2]]).all()
    assert out.median == pytest.approx(0.2)  # of 0.4, 0.2, -0.1
    assert out.share_positive == pytest.approx(2 / 3)
    assert np.isfinite([out.low, out.high]).all()


def test_median_margin_with_nothing_scored_is_nan_not_a_crash():
    out = median_margin([np.nan, np.nan], [0.5, 0.5])
    assert out.n_scored == 0 and out.n_dropped == 2
    assert np.isnan([out.median, out.low, out.high, out.share_positive]).all()


def test_median_margin_is_seeded_and_checks_its_input():
    scores, controls = np.linspace(0, 1, 30), np.full(30, 0.4)
    a, b = median_margin(scores, controls, seed=3), median_margin(scores, controls, seed=3)
    assert (a.low, a.high) == (b.low, b.high)
    with pytest.raises(ValueError, match="paired"):
        median_margin([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="n_boot"):
        median_margin([0.1], [0.1], n_boot=0)


def test_bootstrap_mean_ci_covers_the_mean_and_drops_nans():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0.7, 0.1, 300), [np.nan, np.nan]])
    out = bootstrap_mean_ci(values, n_boot=1000)
    assert out.low < 0.7 < out.high
    assert out.high - out.low < 0.05
    assert out.mean == pytest.approx(np.nanmean(values))
    assert (out.n, out.n_dropped) == (300, 2)
    single = bootstrap_mean_ci([0.5])
    assert single.mean == single.low == single.high == 0.5
    assert np.isnan(bootstrap_mean_ci([]).mean)
