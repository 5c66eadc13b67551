"""saelab.analysis on hand-made and synthetic activations whose right answers are known.

Fast references live here, not in the library: AUROC by brute force over all (in, out)
pairs, exact permutation p-values by enumerating every relabelling of a tiny matrix, and a
plain loop over bootstrap replicates.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import false_discovery_control

from saelab import analysis

# ---------------------------------------------------------------------------------------
# Rankings: strongest / frequent / selective / composite.

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


# ---------------------------------------------------------------------------------------
# AUROC from midranks.


def brute_force_auroc(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """P(a_in > a_out) + 0.5 P(a_in = a_out) over every (in, out) pair, per feature."""
    a, b = x[inside][:, None, :], x[~inside][None, :, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(0, 1))


def test_auroc_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    # Values in {0, 0, 0, 1, 2}: most entries tie at zero, as in sparse SAE features.
    x = rng.choice([0.0, 0.0, 0.0, 1.0, 2.0], size=(23, 40))
    codes = rng.integers(0, 3, 23)
    codes[:3] = [0, 1, 2]
    auroc = analysis.auroc_by_category(analysis.midranks(x), codes, 3)
    for c in range(3):
        np.testing.assert_allclose(auroc[c], brute_force_auroc(x, codes == c), atol=1e-12)


def test_auroc_extremes():
    x = np.array([[3.0, 0.0, 1.0], [2.0, 0.0, 1.0], [1.0, 5.0, 1.0], [0.0, 4.0, 1.0]])
    auroc = analysis.auroc_by_category(analysis.midranks(x), np.array([0, 0, 1, 1]), 2)
    np.testing.assert_allclose(auroc, [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])


# ---------------------------------------------------------------------------------------
# Permutation p-values.


def exact_pvalue(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Share of all relabellings (same group size) whose in-group rank sum >= the observed."""
    ranks = analysis.midranks(x)
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
    result = analysis.permutation_pvalues(
        analysis.midranks(x), codes, [0], n_permutations=20_000, stop_after=10**9, seed=1
    )
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
    result = analysis.permutation_pvalues(analysis.midranks(x), codes, [0, 1], n_permutations=5000, seed=0)
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
    hits = torch.from_numpy(rng.random((300, 50)) < rng.uniform(0.001, 0.2, 50))
    cols = torch.arange(50)

    def run(splits):
        n_exceed, n_run = torch.zeros(1, 50, dtype=torch.long), torch.zeros(1, 50, dtype=torch.long)
        active = torch.ones(1, 50, dtype=torch.bool)
        for lo, hi in itertools.pairwise(splits):
            live = active[0].nonzero().flatten()
            analysis._advance(hits[lo:hi][:, live], 0, cols[live], n_exceed, n_run, active, 10)
        return n_exceed, n_run, active

    one, many = run([0, 300]), run([0, 7, 8, 100, 299, 300])
    for a, b in zip(one, many):
        assert torch.equal(a, b)
    # And it is the plain definition: l = index of the 10th hit, or 300 when fewer hits.
    counts = hits.cumsum(0)
    for f in range(50):
        tenth = (counts[:, f] >= 10).nonzero()
        assert one[1][0, f] == (int(tenth[0]) + 1 if len(tenth) else 300)


def test_permutation_pvalues_are_seeded():
    rng = np.random.default_rng(0)
    x, codes = rng.normal(size=(30, 20)), np.repeat(np.arange(3), 10)
    ranks = analysis.midranks(x)
    a = analysis.permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=5)
    b = analysis.permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=5)
    c = analysis.permutation_pvalues(ranks, codes, [0, 1, 2], n_permutations=2000, seed=6)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    assert not np.array_equal(a.p_value, c.p_value)


# ---------------------------------------------------------------------------------------
# Benjamini-Hochberg.


def test_benjamini_hochberg_hand_computed():
    # sorted: .005 .01 .03 .04 .5 ; m p / j = .025 .025 .05 .05 .5 ; running min from the end.
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    np.testing.assert_allclose(analysis.benjamini_hochberg(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    # The step-up minimum: .04 at j=2 of 2 gives q = .04 for both.
    np.testing.assert_allclose(analysis.benjamini_hochberg(np.array([0.04, 0.03])), [0.04, 0.04])
    assert analysis.benjamini_hochberg(np.array([0.9, 0.8]))[0] == pytest.approx(0.9)


def test_benjamini_hochberg_rows_are_separate_families_and_match_scipy():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4, 200)) ** 3
    q = analysis.benjamini_hochberg(p)
    for row in range(4):
        np.testing.assert_allclose(q[row], false_discovery_control(p[row], method="bh"), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        analysis.benjamini_hochberg(np.array([0.1, 1.5]))


# ---------------------------------------------------------------------------------------
# Bootstrap.


def test_bootstrap_matches_a_plain_loop_over_replicates():
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(1, 1, (12, 3)), rng.normal(0, 1, (30, 3))
    inside[:4] = 0.0
    outside[:10] = 0.0  # ties across groups
    ci = analysis.bootstrap_auroc_ci(inside, outside, n_bootstrap=300, rng=np.random.default_rng(7))
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
    ci = analysis.bootstrap_auroc_ci(np.full((3, 1), 2.0), np.zeros((40, 1)), n_bootstrap=200)
    assert ci.low[0] == ci.high[0] == 1.0


# ---------------------------------------------------------------------------------------
# specialists() end to end on synthetic data with planted truth.

N_CAT, PER_CAT, D_SAE = 7, 20, 300
PLANTED = {c: 10 + 37 * c for c in range(N_CAT)}  # category -> its specialist feature
CONSTANT = 299


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(42)
    names = [f"cat{c}" for c in range(N_CAT)]
    codes = np.repeat(np.arange(N_CAT), PER_CAT)
    n = len(codes)
    x = np.where(rng.random((n, D_SAE)) < 0.1, rng.lognormal(0, 1, (n, D_SAE)), 0.0).astype(np.float32)
    for c, f in PLANTED.items():
        fires = np.where(codes == c, rng.random(n) < 0.9, rng.random(n) < 0.01)
        x[:, f] = np.where(fires, rng.uniform(2, 4, n), 0.0)
    x[:, CONSTANT] = 1.5
    labels = [names[c] for c in codes]
    table = analysis.specialists(x, labels, n_permutations=20_000, n_bootstrap=200, seed=0)
    return x, labels, codes, names, table


def test_specialists_columns_and_shape(synthetic):
    *_, names, table = synthetic
    expected = [
        "category", "rank", "feature", "seed_score", "n_strong_in", "n_strong_out", "n_in", "n_out",
        "mean_in", "mean_out", "auroc", "effect_size", "p_value", "q_value", "ci_low", "ci_high",
        "is_specialist",
    ]  # fmt: skip
    assert list(table.columns[: len(expected)]) == expected
    assert len(table) == N_CAT * 5
    assert table.category.unique().tolist() == names
    assert (table.groupby("category")["rank"].apply(list) == [[1, 2, 3, 4, 5]] * N_CAT).all()
    assert (table.groupby("category").auroc.apply(lambda a: a.is_monotonic_decreasing)).all()


def test_planted_specialists_are_found(synthetic):
    *_, names, table = synthetic
    first = table[table["rank"] == 1].set_index("category")
    for c, f in PLANTED.items():
        row = first.loc[names[c]]
        assert row.feature == f
        assert row.is_specialist
        assert row.auroc >= 0.85  # fires on ~90% of its category
        # No permutation matched it: the smallest p 20,000 permutations can give, and BH's
        # q for a lone discovery among 300 features, m p = 300 / 20,001 < alpha.
        assert row.p_value == pytest.approx(1 / 20_001) and row.q_value < 0.02
        assert row.ci_low <= row.auroc <= row.ci_high and row.ci_low > 0.7


def test_noise_is_not_flagged(synthetic):
    x, labels, codes, names, table = synthetic
    planted = set(PLANTED.values())
    flagged = table[table.is_specialist]
    assert set(flagged.feature) <= planted
    # Over all noise features and categories: p-values roughly uniform, BH flags ~none.
    p = analysis.permutation_pvalues(analysis.midranks(x), codes, range(N_CAT), n_permutations=5000, seed=1).p_value
    noise = np.setdiff1d(np.arange(D_SAE - 1), list(planted))
    assert (p[:, noise] < 0.05).mean() < 0.08
    assert (analysis.benjamini_hochberg(p)[:, noise] < 0.05).mean() < 0.005


def test_constant_feature_has_auroc_half_and_p_one(synthetic):
    x, labels, *_ = synthetic
    table = analysis.specialists(x[:, [CONSTANT, 0]], labels, top=2, n_permutations=1000, n_bootstrap=50)
    const = table[table.feature == 0]
    assert (const.auroc == 0.5).all() and (const.p_value == 1.0).all() and (const.effect_size == 0).all()
    assert (const.n_permutations_run == 10).all() and not const.is_specialist.any()


def test_specialist_row_fields_hand_checked(synthetic):
    x, labels, codes, names, table = synthetic
    row = table[(table.category == "cat2") & (table.feature == PLANTED[2])].iloc[0]
    col, inside = x[:, PLANTED[2]], codes == 2
    assert (row.n_in, row.n_out) == (20, 120)
    assert row.mean_in == pytest.approx(col[inside].mean(), rel=1e-6)
    assert row.mean_out == pytest.approx(col[~inside].mean(), rel=1e-6, abs=1e-9)
    strong = (col > 0) & (col >= 0.5 * col.max())
    assert (row.n_strong_in, row.n_strong_out) == (strong[inside].sum(), strong[~inside].sum())
    assert row.seed_score == row.n_strong_in - row.n_strong_out
    assert row.auroc == pytest.approx(brute_force_auroc(x[:, [PLANTED[2]]], inside)[0])
    assert row.effect_size == pytest.approx(2 * row.auroc - 1)


def test_specialists_options(synthetic):
    x, labels, codes, names, _ = synthetic
    small = dict(n_permutations=500, n_bootstrap=0)
    table = analysis.specialists(x, labels, top=2, categories=["cat3", "cat1"], **small)
    assert table.category.tolist() == ["cat3", "cat3", "cat1", "cat1"]
    assert table.ci_low.isna().all()
    with pytest.raises(ValueError, match=r"unknown categories \['nope'\]"):
        analysis.specialists(x, labels, categories=["nope"], **small)
    with pytest.raises(ValueError, match="labels has 3 entries but feats has 140"):
        analysis.specialists(x, labels[:3], **small)
    with pytest.raises(ValueError, match="at least two categories"):
        analysis.specialists(x, ["a"] * len(labels), **small)
    with pytest.raises(ValueError, match="NaN"):
        analysis.specialists(np.full((2, 2), np.nan), ["a", "b"], **small)


def test_specialist_matrix():
    table = pd.DataFrame(
        {
            "category": ["b", "b", "a", "a"],
            "rank": [1, 2, 1, 2],
            "feature": [7, 8, 3, 4],
            "seed_score": [2, 5, 1, 1],
            "q_value": [0.01, 0.2, 0.5, 0.03],
        }
    )
    best = analysis.specialist_matrix(table)
    assert best.index.tolist() == ["b", "a"] and best.index.name == "category"
    assert best.seed_score.tolist() == [5, 1] and best.feature.tolist() == [8, 3]
    assert analysis.specialist_matrix(table, "q_value").q_value.tolist() == [0.01, 0.03]
    with pytest.raises(ValueError, match="auroc"):
        analysis.specialist_matrix(table, "auroc")


# ---------------------------------------------------------------------------------------
# Co-activation, concept search, layer comparison.


def test_coactivation_hand_made():
    x = np.array(
        [
            [1.0, 2.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 3.0],
            [0.0, 1.0, 0.0, 0.0],
            [2.0, 4.0, 0.0, 0.0],
        ]
    )
    co = analysis.coactivation(x, features=[1, 0, 2])
    assert co.matrix.index.tolist() == [1, 0, 2]
    # f0 on {0,1,3}, f1 on {0,2,3}: both on {0,3}, union of 4 -> 0.5.
    assert co.matrix.loc[0, 1] == co.matrix.loc[1, 0] == 0.5
    assert co.matrix.loc[2, 0] == 0.0 and co.matrix.loc[2, 2] == 0.0 and co.matrix.loc[1, 1] == 1.0
    pairs = co.pairs
    assert list(pairs.columns) == ["feature_a", "feature_b", "n_both", "n_a", "n_b", "jaccard", "correlation"]
    first = pairs.iloc[0]
    assert (first.feature_a, first.feature_b, first.n_both, first.n_a, first.n_b) == (0, 1, 2, 3, 3)
    assert first.correlation == pytest.approx(np.corrcoef(x[:, 0], x[:, 1])[0, 1])
    assert (pairs.feature_a < pairs.feature_b).all() and len(pairs) == 3
    assert pairs[pairs.feature_b == 2].correlation.isna().all()  # f2 is constant
    # features=None: the `top` most frequent features; top also caps the pairs listed.
    co2 = analysis.coactivation(x, top=2)
    assert sorted(co2.matrix.index) == [0, 1] and len(co2.pairs) == 1
    with pytest.raises(ValueError, match="out of range"):
        analysis.coactivation(x, features=[9])


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


def test_compare_layers(synthetic):
    x, labels, codes, names, _ = synthetic
    rng = np.random.default_rng(1)
    noise = np.where(rng.random((len(labels), 50)) < 0.1, rng.lognormal(0, 1, (len(labels), 50)), 0.0)
    result = analysis.compare_layers({"L6": noise, "L8": x}, labels, n_permutations=20_000, n_bootstrap=50)
    summary = result.summary
    assert summary.index.tolist() == ["L6", "L8"] and summary.index.name == "sae"
    assert list(summary.columns) == [
        "strongest_feature", "strongest_value", "frequent_feature", "frequent_coverage",
        "selective_feature", "selective_value", "n_specialist_categories", "n_categories",
        "best_category", "best_category_score",
    ]  # fmt: skip
    assert summary.loc["L8", "n_specialist_categories"] == N_CAT and summary.loc["L6", "n_specialist_categories"] == 0
    assert summary.loc["L8", "frequent_feature"] == CONSTANT and summary.loc["L8", "frequent_coverage"] == 1.0
    assert summary.loc["L8", "strongest_value"] == pytest.approx(x.max())
    assert result.counts.to_dict() == {"L6": 0, "L8": N_CAT}
    assert result.scores.shape == (N_CAT, 2) and result.scores.columns.tolist() == ["L6", "L8"]
    assert result.scores.index.tolist() == names
    assert list(result.specialists.columns[:2]) == ["sae", "category"] and len(result.specialists) == 2 * N_CAT * 5
    assert list(result.strongest.columns) == ["sae", "rank", "feature", "max_activation"]
    assert list(result.frequent.columns) == ["sae", "rank", "feature", "frequency"]
    assert result.frequent.groupby("sae").size().to_dict() == {"L6": 5, "L8": 5}
    with pytest.raises(ValueError, match="labels has 2 entries"):
        analysis.compare_layers({"L6": noise}, labels[:2])


def _comparison_for_trends() -> analysis.LayerComparison:
    # Given out of depth order on purpose: layer 28 first.
    names = ["blocks.28.hook_resid_pre", "blocks.15.hook_resid_pre", "blocks.20.hook_resid_pre"]
    summary = pd.DataFrame(
        {
            "n_specialist_categories": [7, 4, 5],  # 4 -> 5 -> 7 with depth: rises
            "frequent_coverage": [0.3, 0.6, 0.7],  # 0.6 -> 0.7 -> 0.3: falls overall
            "strongest_value": [2.0, 2.0, 5.0],  # 2 -> 5 -> 2: flat
        },
        index=pd.Index(names, name="sae"),
    )
    specialists = pd.DataFrame(
        {
            "sae": [n for n in names for _ in range(4)],
            "category": ["a", "a", "b", "b"] * 3,
            "auroc": [0.9, 0.7, 0.8, 0.6, 0.7, 0.5, 0.6, 0.5, 0.8, 0.6, 0.7, 0.6],
        }
    )
    empty = pd.DataFrame()
    return analysis.LayerComparison(summary, specialists, empty, pd.Series(dtype=int), empty, empty)


def test_layer_trends_orders_by_depth_and_names_the_direction():
    trends = analysis.layer_trends(_comparison_for_trends()).set_index("metric")
    assert (trends.first_sae == "blocks.15.hook_resid_pre").all() and (trends.last_sae == "blocks.28.hook_resid_pre").all()
    assert trends.loc["n_specialist_categories", "trend"] == "rises"
    assert trends.loc["n_specialist_categories", "spearman"] == pytest.approx(1.0)
    assert trends.loc["frequent_coverage", "trend"] == "falls overall"
    assert trends.loc["frequent_coverage", "change"] == pytest.approx(-0.3)
    assert trends.loc["strongest_value", "trend"] == "stays flat"
    # Mean over categories of the best AUROC: layer 15 (0.7+0.6)/2, 20 (0.8+0.7)/2, 28 (0.9+0.8)/2.
    assert trends.loc["mean_best_auroc", "first"] == pytest.approx(0.65)
    assert trends.loc["mean_best_auroc", "last"] == pytest.approx(0.85)
    assert trends.loc["mean_best_auroc", "trend"] == "rises"
    sentences = analysis.describe_trends(trends.reset_index())
    assert sentences[0].startswith("The number of categories with at least one significant specialist rises: 4 at blocks.15")


def test_trend_word_calls_a_tiny_change_about_flat():
    assert analysis._trend_word(np.array([1.0, 1.0, 0.99])) == "stays about flat"
    assert analysis._trend_word(np.array([1.0, 0.9, 0.95])) == "falls overall"
    assert analysis._trend_word(np.array([0.0, 0.001])) == "rises"  # no scale to be relative to but itself


def test_layer_trends_uses_given_depth_and_checks_it():
    comparison = _comparison_for_trends()
    depth = {"blocks.28.hook_resid_pre": 0, "blocks.15.hook_resid_pre": 1, "blocks.20.hook_resid_pre": 2}
    trends = analysis.layer_trends(comparison, depth).set_index("metric")
    assert trends.loc["n_specialist_categories", "first"] == 7
    with pytest.raises(ValueError, match="no entry"):
        analysis.layer_trends(comparison, {"blocks.28.hook_resid_pre": 0})


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
