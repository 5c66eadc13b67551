"""saelab.analysis.specialists end to end on synthetic data with planted truth (the
``synthetic`` fixture): the planted specialists are found, noise is not flagged, and every
column of the table checks out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import analysis
from saelab.analysis.significance import benjamini_hochberg, midranks, permutation_pvalues
from saelab.analysis.specialists import specialist_matrix
from tests.analysis._helpers import CONSTANT, D_SAE, N_CAT, PLANTED, brute_force_auroc


def test_specialists_columns_and_shape(synthetic):
    *_, names, table = synthetic
    expected = [
        "category", "rank", "feature", "strong_in_minus_out", "n_strong_in", "n_strong_out", "n_in", "n_out",
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
    p = permutation_pvalues(midranks(x), codes, range(N_CAT), n_permutations=5000, seed=1).p_value
    noise = np.setdiff1d(np.arange(D_SAE - 1), list(planted))
    assert (p[:, noise] < 0.05).mean() < 0.08
    assert (benjamini_hochberg(p)[:, noise] < 0.05).mean() < 0.005


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
    assert row.strong_in_minus_out == row.n_strong_in - row.n_strong_out
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
    with pytest.raises(ValueError, match="labels has 3 entries but pooled has 140"):
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
            "strong_in_minus_out": [2, 5, 1, 1],
            "q_value": [0.01, 0.2, 0.5, 0.03],
        }
    )
    best = specialist_matrix(table)
    assert best.index.tolist() == ["b", "a"] and best.index.name == "category"
    assert best.strong_in_minus_out.tolist() == [5, 1] and best.feature.tolist() == [8, 3]
    assert specialist_matrix(table, "q_value").q_value.tolist() == [0.01, 0.03]
    with pytest.raises(ValueError, match="auroc"):
        specialist_matrix(table, "auroc")
