"""Every cache keys on the model's one identity: a weight change never reuses a stale
activation store or stale dataset features (before, the store knew only the model's name and
sizes, and the feature cache hashed the embedding and the first block alone)."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saelab._util.keys import model_identity, texts_digest
from saelab.extract.cache import _entry_name
from saelab.store import StoreConfig
from saelab.store.build import store_key


def tiny_model() -> HookedTransformer:
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=3, d_model=8, n_ctx=16, d_head=4, d_vocab=20, act_fn="relu")
    model = HookedTransformer(cfg).eval()
    model.cfg.model_name = "tiny"
    return model


def test_store_key_changes_with_any_weight():
    model = tiny_model()
    cfg = StoreConfig(model_name="tiny", hooks=("blocks.1.hook_resid_pre",), seq_len=8, n_tokens=50)
    texts = ["one document", "and another"]
    before = store_key(model, texts, cfg)
    assert store_key(model, texts, cfg) == before
    with torch.no_grad():
        model.blocks[2].attn.W_O[0, 0, 0] += 0.5  # a layer past the hook: its store would differ for later hooks
    assert store_key(model, texts, cfg) != before


def test_feature_cache_entry_changes_with_a_deep_weight(make_sae):
    model = tiny_model()
    sae = make_sae(8, 16, "blocks.2.hook_resid_pre", model_name="tiny")
    texts = texts_digest(["a text"])
    before = _entry_name(model_identity(model), sae, texts, True)
    with torch.no_grad():
        model.blocks[1].mlp.W_in[0, 0] += 0.5
    assert _entry_name(model_identity(model), sae, texts, True) != before
