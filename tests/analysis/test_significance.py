"""saelab.analysis.significance against references that live here, not in the library: AUROC by
brute force over all (in, out) pairs, exact permutation p-values by enumerating every
relabelling of a tiny matrix, SciPy's Benjamini-Hochberg, and a plain loop over bootstrap
replicates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from saelab.analysis import significance
from saelab.analysis.significance import (
    auroc_by_category,
    benjamini_hochberg,
    bootstrap_auroc_ci,
    midranks,
    permutation_pvalues,
)
from tests.analysis._helpers import brute_force_auroc


def test_auroc_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    # Values in {0, 0, 0, 1, 2}: most entries tie at zero, as in sparse SAE features.
    x = rng.choice([0.0, 0.0, 0.0, 1.0, 2.0], size=(23, 40))
    codes = rng.integers(0, 3, 23)
    codes[:3] = [0, 1, 2]
    auroc = auroc_by_category(midranks(x), codes, 3)
    for c in range(3):
        np.testing.assert_allclose(auroc[c], brute_force_auroc(x, codes == c), atol=1e-12)


def test_auroc_extremes():
    x = np.array([[3.0, 0.0, 1.0], [2.0, 0.0, 1.0], [1.0, 5.0, 1.0], [0.0, 4.0, 1.0]])
    auroc = auroc_by_category(midranks(x), np.array([0, 0, 1, 1]), 2)
    np.testing.assert_allclose(auroc, [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])


def exact_pvalue(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Share of all relabellings (same group size) whose in-group rank sum >= the observed."""
    ranks = midranks(x)
    observed = ranks[inside].sum(axis=0)
    n, n_in = len(x), int(inside.sum())
    sums = np.array([ranks[list(s)].sum(axis=0) for s in itertools.combinations(range(n), n_in)])
    return (sums >= observed - 1e-9).mean(axis=0)


def test_permutation_pvalues_match_exact_enumeration():
    # 8 texts, 3 inside: 56 relabellings, enumerated exactly. Features: perfect separation,
    # partial with ties, constant, and reversed (higher outside: p near 1, one-sided).
    x = np.array(
        [
            [5.0, 1.0, 2.0, 0.0],
            [6.0, 1.0, 2.0, 0.0],
            [7.0, 0.0, 2.0, 0.0],
            [0.0, 1.0, 2.0, 3.0],
            [0.0, 0.0, 2.0, 4.0],
            [1.0, 0.0, 2.0, 5.0],
            [0.0, 1.0, 2.0, 6.0],
            [0.0, 0.0, 2.0, 7.0],
        ]
    )
    codes = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    exact = exact_pvalue(x, codes == 0)
    assert exact[0] == pytest.approx(1 / 56) and exact[2] == 1.0
    # Without early stopping, (b + 1) / (P + 1) estimates the exact p-value.
    result = permutation_pvalues(midranks(x), codes, [0], n_permutations=20_000, stop_after=10**9, seed=1)
    np.testing.assert_allclose(result.p_value[0], exact, atol=0.01)
    assert (result.n_run[0] == 20_000).all() and not result.stopped.any()
    assert (result.p_value[1] == 1.0).all()  # category not requested


def test_besag_clifford_stops_noise_early_and_runs_signal_to_the_end():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(2), 20)
    x = np.zeros((40, 3))
    x[:20, 0] = rng.uniform(1, 2, 20)  # fires only inside category 0
    x[:, 1] = rng.normal(size=40)  # noise
    # x[:, 2] constant
    result = permutation_pvalues(midranks(x), codes, [0, 1], n_permutations=5000, seed=0)
    # Perfect separation is never matched by chance (1 / C(40, 20)): full run, p = 1 / (P + 1).
    assert result.n_run[0, 0] == 5000 and result.p_value[0, 0] == pytest.approx(1 / 5001)
    # A constant feature ties the observed rank sum on every permutation: stops after exactly
    # 10 permutations with p = 10 / 10 = 1.
    assert result.n_run[0, 2] == 10 and result.p_value[0, 2] == 1.0 and result.stopped[0, 2]
    # Category 1's view of feature 0 is "lower inside": p = 1 (always exceeded).
    assert result.p_value[1, 0] == 1.0
    # Noise stops long before the end, and its p-value is h / l.
    assert result.stopped[:, 1].all() and (result.n_run[:, 1] < 1000).all()
    np.testing.assert_allclose(result.p_value[:, 1], 10 / result.n_run[:, 1])


def test_sequential_stopping_does_not_depend_on_block_boundaries():
    rng = np.random.default_rng(3)
    hits = rng.random((300, 50)) < rng.uniform(0.001, 0.2, 50)
    cols = np.arange(50)

    def run(splits):
        n_exceed, n_run = np.zeros((1, 50), dtype=np.int64), np.zeros((1, 50), dtype=np.int64)
        active = np.ones((1, 50), dtype=bool)
        for lo, hi in itertools.pairwise(splits):
            live = np.flatnonzero(active[0])
            significance._advance(hits[lo:hi][:, live], 0, cols[live], n_exceed, n_run, active, 10)
        return n_exceed, n_run, active

    one, many = run([0, 300]), run([0, 7, 8, 100, 299, 300])
    for a, b in zip(one, many, strict=True):
        assert np.array_equal(a, b)
    # And it is the plain definition: l = index of the 10th hit, or 300 when fewer hits.
    counts = hits.cumsum(0)
    for f in range(50):
        tenth = np.flatnonzero(counts[:, f] >= 10)
        assert one[1][0, f] == (int(tenth[0]) + 1 if len(tenth) else 300)


def test_permutation_pvalues_are_seeded():
    rng = np.random.default_rng(0)
    x, codes = rng.normal(size=(30, 20)), np.repeat(np.arange(3), 10)
    ranks = midranks(x)
    a = permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=5)
    b = permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=5)
    c = permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=6)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    assert not np.array_equal(a.p_value, c.p_value)


# ---------------------------------------------------------------------------------------
# Benjamini-Hochberg.


def test_benjamini_hochberg_hand_computed():
    # sorted: .005 .01 .03 .04 .5 ; m p / j = .025 .025 .05 .05 .5 ; running min from the end.
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    # The step-up minimum: .04 at j=2 of 2 gives q = .04 for both.
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.04, 0.03])), [0.04, 0.04])
    assert benjamini_hochberg(np.array([0.9, 0.8]))[0] == pytest.approx(0.9)


def test_benjamini_hochberg_rows_are_separate_families_and_match_scipy():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4, 200)) ** 3
    q = benjamini_hochberg(p)
    for row in range(4):
        np.testing.assert_allclose(q[row], false_discovery_control(p[row], method="bh"), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.1, 1.5]))


# ---------------------------------------------------------------------------------------
# Bootstrap.


def test_bootstrap_matches_a_plain_loop_over_replicates():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(1, 1, (12, 3)), rng.normal(0, 1, (30, 3))
    inside[:4] = 0.0
    outside[:10] = 0.0  # ties across groups
    ci = bootstrap_auroc_ci(inside, outside, n_bootstrap=300, rng=np.random.default_rng(7))
    draw = np.random.default_rng(7)
    idx_in, idx_out = draw.integers(0, 12, (300, 12)), draw.integers(0, 30, (300, 30))
    reps = []
    for b in range(300):
        both = np.concatenate([inside[idx_in[b]], outside[idx_out[b]]])
        reps.append(brute_force_auroc(both, np.arange(42) < 12))
    low, high = np.percentile(np.array(reps), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(ci.low, low, atol=1e-12)
    np.testing.assert_allclose(ci.high, high, atol=1e-12)
    point = brute_force_auroc(np.concatenate([inside, outside]), np.arange(42) < 12)
    assert ((ci.low <= point) & (point <= ci.high)).all()


def test_bootstrap_perfect_separation_is_stratified():
    # Stratified resampling keeps both groups non-empty, so perfect separation stays 1.
    ci = bootstrap_auroc_ci(np.full((3, 1), 2.0), np.zeros((40, 1)), n_bootstrap=200)
    assert ci.low[0] == ci.high[0] == 1.0
