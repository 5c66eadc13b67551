"""saelab.store.build: one model pass for several hooks, exact on disk, with BOS and
separators never stored; a complete store is reused, an interrupted build resumes, and bad
inputs get clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import saelab.store.shards as shards_mod
from saelab.corpus import CorpusConfig
from saelab.corpus.config import DEFAULT_FRACTIONS
from saelab.extract import hook_activations
from saelab.store import ActivationStore, StoreConfig, build_store
from saelab.store.build import store_path
from saelab.store.pack import tokenize_corpus
from tests.store._helpers import HOOKS, tiny_cfg


def test_one_pass_matches_hook_activations_at_every_hook(tiny_model, store):
    tokens = store.tokens()
    mask = store.keep_mask()
    for hook in HOOKS:
        ref = hook_activations(tiny_model, hook, tokens, torch.ones_like(tokens))[mask]
        got = store.load(hook, "all", device="cpu")
        assert got.dtype == torch.float32 and got.shape == (store.n_rows("all"), tiny_model.cfg.d_model)
        # fp16 on disk: relative rounding of 2**-11.
        torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)


def test_bos_and_separators_are_never_stored(tiny_model, store):
    tokens = store.tokens()
    seq, pos = store.row_positions("all")
    assert len(seq) == store.n_rows("all") >= 600
    assert (pos > 0).all()
    special = torch.tensor(tiny_model.tokenizer.all_special_ids)
    assert not torch.isin(tokens[seq, pos], special).any()
    # The corpus does contain separators, and every sequence starts with BOS.
    assert (tokens == tiny_model.tokenizer.eos_token_id).any()
    assert (tokens[:, 0] == tiny_model.tokenizer.bos_token_id).all()


def test_what_is_left_out_matters_in_the_real_model(model, docs):
    """BOS's residual norm is ~10x a typical stored row's already at layer 3 (and ~100x from
    the middle layers on)."""
    tokens = torch.tensor(tokenize_corpus(docs[:4], model.tokenizer, 32, model.tokenizer.bos_token_id))
    acts = hook_activations(model, HOOKS[1], tokens, torch.ones_like(tokens))
    stored = acts[:, 1:][~torch.isin(tokens[:, 1:], torch.tensor(model.tokenizer.all_special_ids))]
    assert acts[0, 0].norm() > 5 * stored.norm(dim=1).median()


def test_one_forward_per_model_batch_and_stop_at_layer(tiny_model, docs, tmp_path):
    calls = {"embed": 0, "deep": 0}
    h1 = tiny_model.hook_dict["hook_embed"].register_forward_hook(
        lambda *a: calls.__setitem__("embed", calls["embed"] + 1)
    )
    h2 = tiny_model.hook_dict["blocks.3.hook_attn_out"].register_forward_hook(
        lambda *a: calls.__setitem__("deep", calls["deep"] + 1)
    )
    try:
        built = build_store(tiny_model, docs, tiny_cfg(tmp_path), progress=False)
    finally:
        h1.remove()
        h2.remove()
    per_shard = [s["seq_end"] - s["seq_start"] for s in built.manifest["shards"]]
    n_batches = sum(-(-n // 3) for n in per_shard)
    assert calls["embed"] == n_batches + 1  # plus one tiny pass that measures the hooks' widths
    assert calls["deep"] == 0  # blocks.3.hook_resid_pre needs blocks 0-2 only


def test_complete_store_is_reused_without_running_the_model(tiny_model, docs, store, monkeypatch):
    cfg = store.config

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tiny_model, "run_with_cache", boom)
    again = build_store(tiny_model, docs, cfg, progress=False)
    assert again.path == store.path
    # The held-out share decides serving, not content: same store, different split.
    half = StoreConfig.from_dict({**cfg.to_dict(), "held_out_fraction": 0.5})
    other = build_store(tiny_model, docs, half, progress=False)
    assert other.path == store.path and other.n_held_out_seq > store.n_held_out_seq
    # Anything that changes content changes the key.
    changed = StoreConfig.from_dict({**cfg.to_dict(), "n_tokens": 700})
    assert store_path(tiny_model, docs, changed) != store.path
    assert store_path(tiny_model, docs[:-1], cfg) != store.path


def test_resume_after_interruption_equals_uninterrupted_build(tiny_model, docs, store, tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    real_write = shards_mod.write_shard
    written = []

    def flaky_write(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated interruption")
        written.append(args[1])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(shards_mod, "write_shard", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        build_store(tiny_model, docs, cfg, progress=False)
    path = store_path(tiny_model, docs, cfg)
    manifest = json.loads((path / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    with pytest.raises(ValueError, match="incomplete"):
        ActivationStore.open(path)
    # A temporary file left by a crash mid-write is cleaned up, never read.
    (path / HOOKS[0] / ".shard_00002.safetensors.tmp-999").write_bytes(b"half a file")

    written.clear()
    monkeypatch.setattr(shards_mod, "write_shard", lambda *a, **k: written.append(a[1]) or real_write(*a, **k))
    resumed = build_store(tiny_model, docs, cfg, progress=False)
    assert written == list(range(2, len(store.manifest["shards"])))  # only the missing shards
    assert not list(path.rglob(".*.tmp-*"))
    assert torch.equal(resumed.tokens(), store.tokens())
    for hook in HOOKS:
        assert torch.equal(resumed.load(hook, "all", device="cpu"), store.load(hook, "all", device="cpu"))


def test_build_from_the_offline_corpus_records_sources(tiny_model, tmp_path):
    # Short documents, so that a few hundred tokens already sample most sources.
    corpus = CorpusConfig(target_tokens=4000, max_doc_chars=200, seed=3)
    built = build_store(tiny_model, corpus, tiny_cfg(tmp_path), progress=False)
    by_source = built.tokens_by_source
    assert sum(by_source.values()) == built.n_seq * 31
    assert len(by_source) >= 4 and set(by_source) <= set(DEFAULT_FRACTIONS)
    assert built.manifest["corpus"]["config"] == corpus.to_dict()
    assert len(built.manifest["corpus"]["labelled_ids"]) == 98  # half of the 196 labelled texts


def test_bad_inputs_get_clear_errors(tiny_model, docs, tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        build_store(tiny_model, docs, tiny_cfg(tmp_path, model_name="gpt2"), progress=False)
    with pytest.raises(ValueError, match="do not exist"):
        build_store(tiny_model, docs, tiny_cfg(tmp_path, hooks=("blocks.99.hook_resid_pre",)), progress=False)
    with pytest.raises(TypeError, match="single string"):
        build_store(tiny_model, "just one text", tiny_cfg(tmp_path), progress=False)
    with pytest.raises(ValueError, match="raise CorpusConfig.target_tokens"):
        build_store(tiny_model, docs[:2], tiny_cfg(tmp_path), progress=False)
