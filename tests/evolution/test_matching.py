"""Matching features across SAEs: planted pairs are recovered, the rest is flagged as having no
good match, and the threshold comes from a null that unrelated features rarely pass."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from saelab.evolution import match_features, per_token_pairs
from saelab.evolution.matching import best_of
from saelab.evolution.nulls import covariance_matched_directions, own_dictionary_null
from saelab.evolution.similarity import CorrelationAccumulator, decoder_similarity

D_IN, N_FEATURES, N_SHARED = 64, 300, 200


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def planted_decoders(seed: int = 0, noise: float = 0.3):
    """A and B share N_SHARED directions (B's copies under a random permutation, plus noise);
    the other features of B are fresh random directions. Returns A, B and the truth
    (the id in B of each feature of A, or -1)."""
    gen = torch.Generator().manual_seed(seed)
    a = unit(torch.randn(N_FEATURES, D_IN, generator=gen))
    b = unit(torch.randn(N_FEATURES, D_IN, generator=gen))
    perm = torch.randperm(N_FEATURES, generator=gen)
    b[perm[:N_SHARED]] = a[:N_SHARED] + noise * torch.randn(N_SHARED, D_IN, generator=gen) / D_IN**0.5
    truth = np.full(N_FEATURES, -1)
    truth[:N_SHARED] = perm[:N_SHARED].numpy()
    return a, b, truth


def precision_recall(matches, truth):
    pred = np.where(matches.best["matched"], matches.best["best_match"], -1)
    hits = ((pred == truth) & (pred >= 0)).sum()
    return hits / max((pred >= 0).sum(), 1), hits / (truth >= 0).sum(), pred


@pytest.mark.parametrize("method", ["decoder", "hungarian"])
def test_planted_pairs_are_recovered_and_the_rest_flagged(method):
    a, b, truth = planted_decoders()
    matches = match_features(a, b, method=method)
    precision, recall, pred = precision_recall(matches, truth)
    assert precision >= 0.95 and recall >= 0.95
    assert (pred[N_SHARED:] == -1).mean() >= 0.95  # the unshared features have no good match
    assert matches.null_rate <= 0.05
    assert matches.matched_share == pytest.approx(N_SHARED / N_FEATURES, abs=0.03)


def test_the_pair_table_is_tidy_and_ranked():
    a, b, truth = planted_decoders()
    pairs = match_features(a, b, top=3).pairs
    assert list(pairs.columns) == ["feature_a", "feature_b", "similarity", "rank"]
    assert len(pairs) == 3 * N_FEATURES
    for _, group in pairs.groupby("feature_a"):
        assert group["rank"].tolist() == [1, 2, 3]
        assert group["similarity"].is_monotonic_decreasing
    first = pairs[pairs["rank"] == 1].set_index("feature_a")["feature_b"]
    assert (first.loc[: N_SHARED - 1].to_numpy() == truth[:N_SHARED]).mean() >= 0.99


def test_hungarian_is_one_to_one():
    a, b, _ = planted_decoders()
    best = match_features(a, b, method="hungarian").best
    assert best["best_match"].is_unique


def test_backward_matches_look_from_b():
    a, b, truth = planted_decoders()
    back = match_features(a, b).best_b
    shared_b = truth[:N_SHARED]
    assert (back.loc[shared_b, "best_match"].to_numpy() == np.arange(N_SHARED)).mean() >= 0.99
    assert back.loc[shared_b, "matched"].mean() >= 0.95


def test_the_null_keeps_the_anisotropy_of_the_real_directions():
    """Directions crowded around one axis: random isotropic directions would set a threshold
    that crowded but unrelated directions pass; the covariance-matched null does not."""
    gen = torch.Generator().manual_seed(1)
    axis = torch.zeros(D_IN)
    axis[0] = 1.0
    a = unit(6 * axis + torch.randn(N_FEATURES, D_IN, generator=gen))
    b = unit(6 * axis + torch.randn(N_FEATURES, D_IN, generator=gen))  # unrelated to a, same crowding
    matches = match_features(a, b)
    assert matches.matched_share <= 0.05
    assert matches.threshold > 0.6  # unrelated crowded directions are that alike
    null = covariance_matched_directions(b, seed=3)
    assert float((null @ axis).mean()) == pytest.approx(float((b @ axis).mean()), abs=0.03)
    isotropic = unit(torch.randn(N_FEATURES, D_IN, generator=gen))
    assert float((a @ isotropic.T).max(dim=1).values.quantile(0.99)) < 0.5  # would pass almost everything


def test_the_dictionary_null_never_compares_a_feature_with_itself():
    a, _, _ = planted_decoders()
    null = own_dictionary_null(a, N_FEATURES, N_FEATURES, seed=0)
    assert null.shape == (N_FEATURES, N_FEATURES)
    self_sims = (a @ a.T).numpy()
    np.fill_diagonal(self_sims, -1.0)
    # every column once (a permutation): each row's best is its nearest *other* feature
    np.testing.assert_allclose(np.sort(null.max(axis=1)), np.sort(self_sims.max(axis=1)), rtol=1e-5)
    assert (null.max(axis=1) < 0.99).all()
    wide = own_dictionary_null(a, 5, 2 * N_FEATURES, seed=1)  # more columns than features: drawn with replacement
    assert wide.shape == (5, 2 * N_FEATURES) and (wide < 0.99).all()


def test_activation_matching_recovers_planted_pairs():
    """B's features are A's features (permuted), each copy with its own noise; the others fire
    independently at the same rate."""
    rng = np.random.default_rng(0)
    n_tokens, n = 20_000, 60
    acts_a = rng.exponential(1.0, (n_tokens, n)) * (rng.random((n_tokens, n)) < 0.05)
    acts_b = rng.exponential(1.0, (n_tokens, n)) * (rng.random((n_tokens, n)) < 0.05)
    perm = rng.permutation(n)
    shared = 40
    acts_b[:, perm[:shared]] = acts_a[:, :shared] * rng.uniform(0.5, 1.5, (n_tokens, shared))
    chunks = range(0, n_tokens, 5000)
    sample = [(sp.csr_matrix(acts_a[i : i + 5000]), sp.csr_matrix(acts_b[i : i + 5000])) for i in chunks]
    matches = match_features(np.eye(n, 8), np.eye(n, 8), method="activation", sample=sample)
    truth = np.full(n, -1)
    truth[:shared] = perm[:shared]
    precision, recall, _ = precision_recall(matches, truth)
    assert precision >= 0.95 and recall >= 0.95
    assert matches.n_tokens == n_tokens and matches.null_rate <= 0.05


def test_correlation_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.exponential(1.0, (500, 7)) * (rng.random((500, 7)) < 0.3)
    y = rng.exponential(1.0, (500, 5)) * (rng.random((500, 5)) < 0.3)
    y[:, 0] = 2 * x[:, 3]
    acc = CorrelationAccumulator(7, 5)
    for i in range(0, 500, 128):  # chunks of uneven size, summed exactly
        acc.update(x[i : i + 128], torch.from_numpy(y[i : i + 128]))
    expected = np.corrcoef(x.T, y.T)[:7, 7:]
    np.testing.assert_allclose(acc.correlation(), expected, atol=1e-5)
    assert acc.correlation()[3, 0] == pytest.approx(1.0, abs=1e-5)


def test_a_feature_that_never_fires_has_no_match():
    x = np.zeros((100, 3))
    x[::3, 0] = 1.0
    acc = CorrelationAccumulator(3, 3)
    acc.update(x, x)
    corr = acc.correlation()
    assert corr[0, 0] == pytest.approx(1.0) and not corr[1:].any()
    assert acc.active_a.tolist() == [True, False, False]


def test_decoder_similarity_is_the_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(decoder_similarity(a, b), [[0.0, 2**-0.5], [2**-0.5, 1.0]], atol=1e-6)


def test_saes_are_read_through_their_decoder(make_sae):
    sae_a = make_sae(16, 40, "blocks.1.hook_resid_pre", seed=0)
    sae_b = make_sae(16, 40, "blocks.2.hook_resid_pre", seed=0)  # the same weights: every feature matches itself
    best = match_features(sae_a, sae_b).best
    assert (best["best_match"].to_numpy() == np.arange(40)).all() and best["matched"].all()


def test_per_token_pairs_need_the_same_tokens(tiny_model, make_sae):
    import saelab

    d = tiny_model.cfg.d_model
    saes = {"a": make_sae(d, 32, "blocks.1.hook_resid_pre"), "b": make_sae(d, 32, "blocks.2.hook_resid_pre", seed=1)}
    texts = ["The cat sat on the mat.", "def f(x):\n    return x + 1"]
    found = saelab.extract_per_token_multi(tiny_model, saes, texts)
    [(chunk_a, chunk_b)] = per_token_pairs(found["a"], found["b"])
    assert chunk_a.shape == chunk_b.shape == (found["a"].row_ptr.numel() - 1, 32)
    other = saelab.extract_per_token_multi(tiny_model, saes, texts[:1])
    with pytest.raises(ValueError, match="not of the same tokens"):
        per_token_pairs(found["a"], other["b"])


def test_bad_input_gets_clear_errors(make_sae):
    a, b, _ = planted_decoders()
    with pytest.raises(ValueError, match="different d_in"):
        match_features(make_sae(16, 8, "blocks.1.hook_resid_pre"), make_sae(24, 8, "blocks.2.hook_resid_pre"))
    with pytest.raises(ValueError, match="empty"):
        match_features(a, b, method="activation", sample=[])
    with pytest.raises(ValueError, match="needs a token sample"):
        match_features(a, b, method="activation")
    with pytest.raises(ValueError, match="Unknown method"):
        match_features(a, b, method="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="null_quantile"):
        match_features(a, b, null_quantile=1.0)
    with pytest.raises(ValueError, match="Unknown decoder null"):
        match_features(a, b, null="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 features"):
        match_features(a[:1], b)
    assert match_features(a[:1], b, null="gaussian").best.shape[0] == 1
    with pytest.raises(ValueError, match="out of range"):
        best_of(match_features(a, b), [0, N_FEATURES])
    with pytest.raises(ValueError, match="norm 0"):
        match_features(torch.zeros(3, D_IN), b)
    with pytest.raises(ValueError, match="same tokens"):
        acc = CorrelationAccumulator(2, 2)
        acc.update(np.ones((3, 2)), np.ones((4, 2)))
