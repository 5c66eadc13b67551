"""SVCCA on planted pairs: one space seen through two linear maps is near 1 and far above
random pairings; two unrelated spaces sit at the random-pairing level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab.crossmodel import decoder_svcca, svcca
from saelab.crossmodel.svcca import canonical_correlations


def _shared(n: int = 600, k: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two spaces (dims 30 and 40) that are linear maps of one k-dim latent, plus noise."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, k))
    a = latent @ rng.standard_normal((k, 30)) + 0.05 * rng.standard_normal((n, 30))
    b = latent @ rng.standard_normal((k, 40)) + 0.05 * rng.standard_normal((n, 40))
    return a, b


def test_one_space_through_two_maps_scores_near_one_and_far_above_random_pairings() -> None:
    a, b = _shared()
    result = svcca(a, b, variance=0.99, max_dims=20)
    assert result.mean_correlation > 0.95
    assert result.random_mean < 0.3 and result.above_random_sd > 10
    assert result.dims_a <= 20 and result.n_pairs == 600


def test_unrelated_spaces_score_at_the_random_pairing_level() -> None:
    a, _ = _shared(seed=1)
    _, b = _shared(seed=2)
    result = svcca(a, b, max_dims=12)
    assert abs(result.mean_correlation - result.random_mean) < 4 * result.random_sd


def test_canonical_correlations_of_a_space_with_itself_are_one() -> None:
    a, _ = _shared(n=200)
    assert np.allclose(canonical_correlations(a, a @ np.random.default_rng(3).standard_normal((30, 30))), 1.0)


def test_decoder_svcca_reads_the_paired_rows_and_refuses_bad_input() -> None:
    a, b = _shared()
    pairs = pd.DataFrame({"feature_a": np.arange(600), "feature_b": np.arange(600)[::-1]})
    direct = svcca(a, b[::-1].copy(), max_dims=20)
    assert decoder_svcca(pairs, a, b[::-1][::-1], max_dims=20).mean_correlation == pytest.approx(
        direct.mean_correlation
    )
    with pytest.raises(ValueError, match="by chance"):
        svcca(a[:30], b[:30], max_dims=20)
    with pytest.raises(ValueError, match="same n"):
        svcca(a, b[:10])
    with pytest.raises(ValueError, match="outside the decoders"):
        decoder_svcca(pd.DataFrame({"feature_a": [700], "feature_b": [0]}), a, b)
    with pytest.raises(ValueError, match="No matched pairs"):
        decoder_svcca(pairs.iloc[:0], a, b)
