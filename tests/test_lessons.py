"""saelab.lessons: the deliberate mistakes the notebooks show. The dense-vs-sparse view agrees
with per-token extraction, and the naive padded mean depends on the batch where masked pooling
does not."""

import pytest
import torch

import saelab
from saelab.lessons import naive_mean_features
from tests.extract._helpers import HOOK, HOOKS, LONG_TEXTS, MULTI_TEXTS


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 256, HOOK, seed=1)


@pytest.fixture(scope="module")
def saes(tiny_model, make_sae):
    # A small input_norm makes about half of these random features fire on any token.
    return {hook: make_sae(tiny_model.cfg.d_model, 96, hook, seed=i, input_norm=10.0) for i, hook in enumerate(HOOKS)}


def test_dense_vs_sparse(tiny_model, sae):
    text = LONG_TEXTS[0][:300]
    view = saelab.dense_vs_sparse(tiny_model, sae, text)
    per_token = saelab.extract_per_token(tiny_model, sae, [text])
    assert view.tokens == per_token.tokens[0]
    assert view.resid.shape == (len(view.tokens), tiny_model.cfg.d_model)
    assert view.resid_nonzero_frac > 0.99  # the residual stream is dense
    assert 0 < view.feature_active_frac < 0.5
    assert view.l0_per_token.tolist() == (per_token.dense(0) > 0).sum(1).tolist()
    assert view.n_features_active_anywhere == int((per_token.dense(0) > 0).any(0).sum())


def test_naive_pooling_depends_on_the_batch_and_masked_pooling_does_not(tiny_model, saes):
    sae = saes[HOOKS[1]]
    short, long_text = MULTI_TEXTS[0], MULTI_TEXTS[1]
    naive_alone = naive_mean_features(tiny_model, sae, [short])
    naive_batched = naive_mean_features(tiny_model, sae, [short, long_text])
    masked_alone = saelab.extract_features(tiny_model, sae, [short])
    masked_batched = saelab.extract_features(tiny_model, sae, [short, long_text])
    torch.testing.assert_close(masked_batched[:1], masked_alone, atol=1e-4, rtol=0)
    # Padded next to a long text, the short text's naive mean is mostly pad positions.
    assert (naive_batched[0] - naive_alone[0]).abs().max() > 10 * (masked_batched[0] - masked_alone[0]).abs().max()
    # Alone, nothing is padded, so naive = mean over all positions with BOS included.
    with_bos = saelab.extract_features(tiny_model, sae, [short], exclude_bos=False)
    torch.testing.assert_close(naive_alone, with_bos, atol=1e-4, rtol=1e-5)
