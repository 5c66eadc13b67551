"""Several SAEs from one model pass, pooling from per-token features, the feature cache, and
the naive (padding-diluted) pooling kept for the padding lesson."""

import pytest
import torch

import saelab
from saelab import cache
from saelab.extract import PerTokenFeatures, extract_features_multi, naive_mean_features

HOOKS = ("blocks.3.hook_resid_pre", "blocks.6.hook_resid_pre", "blocks.5.hook_mlp_out")
TEXTS = [
    "Hi!",
    "import numpy as np\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n" * 3,
    "Le comité se réunira mardi prochain à dix heures pour examiner le budget.",
    "lol that was AMAZING 🔥🔥 #blessed @someone",
    "∑_{k=1}^{n} k = n(n+1)/2",
]


@pytest.fixture(scope="module")
def saes(model, make_sae):
    # Early hooks have small residual norms; a small input_norm keeps these random SAEs active.
    return {hook: make_sae(model.cfg.d_model, 96, hook, seed=i, input_norm=10.0) for i, hook in enumerate(HOOKS)}


def test_multi_equals_one_sae_at_a_time(model, saes):
    together = extract_features_multi(model, saes, TEXTS, pooling="mean", batch_size=3)
    assert list(together) == list(saes)
    for name, sae in saes.items():
        alone = saelab.extract_features(model, sae, TEXTS, pooling="mean", batch_size=3)
        assert alone.abs().max() > 0.05
        torch.testing.assert_close(together[name], alone, atol=1e-5, rtol=0)


def test_multi_per_token_equals_one_sae_at_a_time(model, saes):
    together = extract_features_multi(model, saes, TEXTS, pooling=None)
    for name, sae in saes.items():
        alone = saelab.extract_features(model, sae, TEXTS, pooling=None)
        assert together[name].tokens == alone.tokens
        for i in range(len(TEXTS)):
            torch.testing.assert_close(together[name].dense(i), alone.dense(i), atol=1e-5, rtol=0)


def test_multi_rejects_empty_mapping(model):
    with pytest.raises(ValueError, match="saes is empty"):
        extract_features_multi(model, {}, TEXTS)


@pytest.mark.parametrize("pooling", ["mean", "max", "sum", "last"])
def test_pool_from_per_token_matches_extract(model, saes, pooling):
    sae = saes[HOOKS[1]]
    per_token = saelab.extract_features(model, sae, TEXTS, pooling=None)
    pooled = saelab.extract_features(model, sae, TEXTS, pooling=pooling)
    torch.testing.assert_close(per_token.pool(pooling), pooled, atol=1e-4, rtol=1e-5)


def _hand_made() -> PerTokenFeatures:
    # Text 0: two tokens; feature 1 is 2.0 then 4.0, feature 2 is -1.0 on both tokens
    # (negative on every token, so its max is -1, not 0). Text 1: one token, feature 0 = 3.
    return PerTokenFeatures(
        tokens=[["a", "b"], ["c"]],
        token_ids=[[1, 2], [3]],
        d_sae=3,
        row_ptr=torch.tensor([0, 2, 4, 5]),
        feature_idx=torch.tensor([1, 2, 1, 2, 0]),
        values=torch.tensor([2.0, -1.0, 4.0, -1.0, 3.0]),
        text_row_start=torch.tensor([0, 2, 3]),
    )


def test_pool_on_a_hand_made_matrix():
    feats = _hand_made()
    torch.testing.assert_close(feats.pool("sum"), torch.tensor([[0.0, 6.0, -2.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("mean"), torch.tensor([[0.0, 3.0, -1.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("max"), torch.tensor([[0.0, 4.0, -1.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("last"), torch.tensor([[0.0, 4.0, -1.0], [3.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="Unknown pooling"):
        feats.pool("median")


def test_save_and_load_round_trip(tmp_path):
    feats = _hand_made()
    back = PerTokenFeatures.load(feats.save(tmp_path / "entry"))
    assert back.tokens == feats.tokens and back.token_ids == feats.token_ids and back.d_sae == 3
    for name in ("row_ptr", "feature_idx", "values", "text_row_start"):
        assert torch.equal(getattr(back, name), getattr(feats, name))


def test_cache_reuses_entries_and_notices_changed_saes(model, saes, tmp_path, monkeypatch):
    first = cache.cached_per_token(model, saes, TEXTS, root=tmp_path)
    assert len(list(tmp_path.iterdir())) == len(saes)

    def fail(*args, **kwargs):
        raise AssertionError("the model ran although every entry was cached")

    monkeypatch.setattr(cache, "extract_features_multi", fail)
    again = cache.cached_per_token(model, saes, TEXTS, root=tmp_path)
    for name in saes:
        assert torch.equal(again[name].values, first[name].values)

    # A changed SAE (or text list) gets a new key, hence a fresh extraction.
    changed = {HOOKS[0]: saes[HOOKS[0]]}
    with torch.no_grad():
        changed[HOOKS[0]] = type(saes[HOOKS[0]])(saes[HOOKS[0]].cfg)
        changed[HOOKS[0]].load_state_dict(saes[HOOKS[0]].state_dict())
        changed[HOOKS[0]].b_enc.add_(0.5)
    with pytest.raises(AssertionError, match="the model ran"):
        cache.cached_per_token(model, changed, TEXTS, root=tmp_path)
    with pytest.raises(AssertionError, match="the model ran"):
        cache.cached_per_token(model, saes, TEXTS[:2], root=tmp_path)


def test_damaged_cache_entry_is_recomputed(model, saes, tmp_path):
    one = {HOOKS[0]: saes[HOOKS[0]]}
    cache.cached_per_token(model, one, TEXTS, root=tmp_path)
    (entry,) = tmp_path.iterdir()
    (entry / "features.safetensors").write_bytes(b"not a safetensors file")
    again = cache.cached_per_token(model, one, TEXTS, root=tmp_path)
    assert again[HOOKS[0]].n_texts == len(TEXTS)


def test_naive_pooling_depends_on_the_batch_and_masked_pooling_does_not(model, saes):
    sae = saes[HOOKS[1]]
    short, long_text = TEXTS[0], TEXTS[1]
    naive_alone = naive_mean_features(model, sae, [short])
    naive_batched = naive_mean_features(model, sae, [short, long_text])
    masked_alone = saelab.extract_features(model, sae, [short])
    masked_batched = saelab.extract_features(model, sae, [short, long_text])
    torch.testing.assert_close(masked_batched[:1], masked_alone, atol=1e-4, rtol=0)
    # Padded next to a long text, the short text's naive mean is mostly pad positions.
    assert (naive_batched[0] - naive_alone[0]).abs().max() > 10 * (masked_batched[0] - masked_alone[0]).abs().max()
    # Alone, nothing is padded, so naive = mean over all positions with BOS included.
    with_bos = saelab.extract_features(model, sae, [short], exclude_bos=False)
    torch.testing.assert_close(naive_alone, with_bos, atol=1e-4, rtol=1e-5)
