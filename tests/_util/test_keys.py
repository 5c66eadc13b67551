"""Stable keys: one hash, one text digest, and one identity per model and per SAE."""

from __future__ import annotations

import copy

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saelab._util.keys import (
    KEY_LENGTH,
    model_identity,
    sae_identity,
    stable_hash,
    tensors_digest,
    texts_digest,
    tokenizer_digest,
)


def tiny_model(seed: int = 0) -> HookedTransformer:
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=16, d_head=4, d_vocab=20, act_fn="relu", seed=seed)
    return HookedTransformer(cfg).eval()


def test_stable_hash_ignores_key_order_and_has_one_length():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert len(stable_hash("x")) == len(texts_digest(["x"])) == len(tensors_digest({"t": torch.ones(2)})) == KEY_LENGTH


def test_texts_digest_tells_lists_apart_that_concatenate_alike():
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])
    assert texts_digest(["ab", "c"]) != texts_digest(["c", "ab"])
    assert texts_digest(["ab", "c"]) == texts_digest(("ab", "c"))


def test_tensors_digest_sees_values_dtype_and_shape():
    base = tensors_digest({"w": torch.zeros(2, 3)})
    assert tensors_digest({"w": torch.zeros(3, 2)}) != base
    assert tensors_digest({"w": torch.zeros(2, 3, dtype=torch.float64)}) != base
    changed = torch.zeros(2, 3)
    changed[1, 2] = 1e-6
    assert tensors_digest({"w": changed}) != base


def test_model_identity_follows_every_weight_not_the_runtime_settings():
    model = tiny_model()
    key = model_identity(model)
    assert model_identity(tiny_model()) == key  # same weights, another object
    assert model_identity(tiny_model(seed=1)) != key
    model.cfg.use_attn_result = True  # how the model is used, not what it computes
    assert model_identity(model) == key
    model.cfg.use_attn_result = False


def test_model_identity_notices_an_in_place_edit_of_a_deep_weight():
    model = tiny_model()
    key = model_identity(model)
    weight = model.blocks[1].mlp.W_out  # the last block: a hash of the first layers alone would miss it
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] += 1.0
    assert model_identity(model) != key
    with torch.no_grad():
        weight[0, 0] = original
    assert model_identity(model) == key


def test_sae_identity_covers_hook_and_weights(make_sae):
    sae = make_sae(8, 16, "blocks.1.hook_resid_pre", seed=0)
    key = sae_identity(sae)
    assert sae_identity(make_sae(8, 16, "blocks.1.hook_resid_pre", seed=0)) == key
    assert sae_identity(make_sae(8, 16, "blocks.0.hook_resid_pre", seed=0)) != key
    with torch.no_grad():
        sae.b_dec[0] += 1
    assert sae_identity(sae) != key


@pytest.mark.parametrize("bad", [object(), {1, 2}])
def test_stable_hash_of_unusual_objects_is_still_a_string(bad):
    assert len(stable_hash(bad)) == KEY_LENGTH


def test_tokenizer_digest_ignores_padding_and_truncation_settings(smollm2_tokenizer):
    """TransformerLens's to_tokens switches padding on; a model's identity, and every cache
    key made from it, must not depend on whether anything was tokenized first."""
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    fresh = tokenizer_digest(tokenizer)
    tokenizer.backend_tokenizer.enable_padding(pad_id=0, pad_token="<pad>", direction="left")
    tokenizer.backend_tokenizer.enable_truncation(max_length=7)
    assert tokenizer_digest(tokenizer) == fresh
    tokenizer.add_tokens(["<a-new-token>"])  # what the tokenizer computes does change it
    assert tokenizer_digest(tokenizer) != fresh
