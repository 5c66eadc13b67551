"""saelab.analysis.coactivation on a hand-made matrix: Jaccard overlap, pair counts and
correlations."""

from __future__ import annotations

import numpy as np
import pytest

from saelab import analysis


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
