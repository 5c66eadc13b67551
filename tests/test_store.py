"""The activation store: one pass for several hooks, exact on disk, resumable, reusable,
and served in shuffled batches that cover every training row once per epoch."""

from __future__ import annotations

import json

import pytest
import torch

import saelab
import saelab.store as store_mod
from saelab.corpus import DEFAULT_FRACTIONS, CorpusConfig, encode
from saelab.extract import hook_activations
from saelab.store import ActivationStore, StoreConfig, build_store, keep_mask, store_path, tokenize_corpus

HOOKS = ("blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre")
ROW_BYTES = 576 * 2  # one fp16 row of SmolLM2's residual stream


@pytest.fixture(scope="module")
def docs():
    return saelab.load_dataset()["text"].tolist()[::3]


def tiny_cfg(root, **overrides) -> StoreConfig:
    # 31 stored rows per 32-token sequence at most, 4 sequences per shard, ~5 shards.
    base = dict(
        hooks=HOOKS,
        seq_len=32,
        n_tokens=600,
        shard_tokens=124,
        model_batch_size=3,
        held_out_fraction=0.2,
        cache_root=str(root),
    )
    return StoreConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def store(model, docs, tmp_path_factory):
    return build_store(model, docs, tiny_cfg(tmp_path_factory.mktemp("store")), progress=False)


def row_set(rows: torch.Tensor) -> list[bytes]:
    return sorted(r.numpy().tobytes() for r in rows)


# ---------------------------------------------------------------------------------------
# Tokens and masks.


def test_tokenize_corpus_packs_documents_with_bos_and_separators(model):
    tok = model.tokenizer
    docs = ["The cat sat on the mat.", "def f(x):\n    return x + 1", "Bonjour à tous !"] * 4
    rows = tokenize_corpus(docs, tok, seq_len=8, bos_id=tok.bos_token_id)
    stream = [t for ids in encode(tok, docs) for t in [*ids, tok.eos_token_id]]
    assert rows.shape == (len(stream) // 7, 8)
    assert (rows[:, 0] == tok.bos_token_id).all()
    # Each row continues the packed stream where the previous one stopped.
    assert rows[:, 1:].reshape(-1).tolist() == stream[: rows.shape[0] * 7]
    assert tokenize_corpus(docs, tok, 8, tok.bos_token_id, n_seq=2).tolist() == rows[:2].tolist()
    with pytest.raises(ValueError, match="fill only"):
        tokenize_corpus(docs, tok, 8, tok.bos_token_id, n_seq=10_000)


def test_keep_mask_drops_position_zero_and_special_tokens_after_it():
    tokens = torch.tensor([[1, 5, 2, 6], [1, 7, 8, 0]])
    mask = keep_mask(tokens, exclude_bos=True, excluded_ids=[0, 1, 2])
    assert mask.tolist() == [[False, True, False, True], [False, True, True, False]]
    assert keep_mask(tokens, exclude_bos=False, excluded_ids=[1]).tolist() == [[True] * 4, [True] * 4]


def test_store_config_validates_and_round_trips(tmp_path):
    cfg = tiny_cfg(tmp_path)
    assert StoreConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="float16"):
        StoreConfig(dtype="int8")
    with pytest.raises(ValueError, match="held_out_fraction"):
        StoreConfig(held_out_fraction=1.0)
    with pytest.raises(ValueError, match="duplicates"):
        StoreConfig(hooks=("a", "a"))


# ---------------------------------------------------------------------------------------
# Building.


def test_one_pass_matches_hook_activations_at_every_hook(model, store):
    tokens = store.tokens()
    mask = store.keep_mask()
    for hook in HOOKS:
        ref = hook_activations(model, hook, tokens, torch.ones_like(tokens))[mask]
        got = store.load(hook, "all", device="cpu")
        assert got.dtype == torch.float32 and got.shape == (store.n_rows("all"), 576)
        # fp16 on disk: relative rounding of 2**-11.
        torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)


def test_bos_and_separators_are_never_stored(model, store):
    tokens = store.tokens()
    seq, pos = store.row_positions("all")
    assert len(seq) == store.n_rows("all") >= 600
    assert (pos > 0).all()
    special = torch.tensor(model.tokenizer.all_special_ids)
    assert not torch.isin(tokens[seq, pos], special).any()
    # The corpus does contain separators, and every sequence starts with BOS.
    assert (tokens == model.tokenizer.eos_token_id).any()
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    # What was left out matters: BOS's residual norm is ~10x a typical stored row's already
    # at layer 3 (and ~100x from the middle layers on).
    bos_norm = hook_activations(model, HOOKS[1], tokens[:1, :2], torch.ones(1, 2, dtype=torch.long))[0, 0].norm()
    assert bos_norm > 5 * store.load(HOOKS[1], "all", device="cpu").norm(dim=1).median()


def test_one_forward_per_model_batch_and_stop_at_layer(model, docs, tmp_path):
    calls = {"embed": 0, "deep": 0}
    h1 = model.hook_dict["hook_embed"].register_forward_hook(lambda *a: calls.__setitem__("embed", calls["embed"] + 1))
    h2 = model.hook_dict["blocks.3.hook_attn_out"].register_forward_hook(
        lambda *a: calls.__setitem__("deep", calls["deep"] + 1)
    )
    try:
        built = build_store(model, docs, tiny_cfg(tmp_path), progress=False)
    finally:
        h1.remove()
        h2.remove()
    per_shard = [s["seq_end"] - s["seq_start"] for s in built.manifest["shards"]]
    n_batches = sum(-(-n // 3) for n in per_shard)
    assert calls["embed"] == n_batches + 1  # plus one tiny pass that measures the hooks' widths
    assert calls["deep"] == 0  # blocks.3.hook_resid_pre needs blocks 0-2 only


def test_manifest_round_trip(store):
    opened = ActivationStore.open(store.path)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["version"] == store_mod.STORE_VERSION
    assert opened.key == store.key == manifest["key"]
    assert opened.config == store.config and opened.hooks == HOOKS
    assert opened.n_rows("all") == manifest["n_rows"] == sum(s["n_rows"] for s in manifest["shards"])
    assert [opened.d_in(h) for h in HOOKS] == [576, 576]
    assert opened.dtype == torch.float16
    assert manifest["corpus"]["tokens_by_source"]["docs"] == opened.n_seq * 31
    for shard in manifest["shards"]:
        for hook in HOOKS:
            assert (store.path / shard["files"][hook]).is_file()
    train = store.load(HOOKS[0], "train", device="cpu")
    torch.testing.assert_close(opened.load(HOOKS[0], "train", device="cpu"), train)
    with pytest.raises(ValueError, match="valid"):
        opened.load("blocks.2.hook_resid_pre")


def test_complete_store_is_reused_without_running_the_model(model, docs, store, monkeypatch):
    cfg = store.config

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(model, "run_with_cache", boom)
    again = build_store(model, docs, cfg, progress=False)
    assert again.path == store.path
    # The held-out share decides serving, not content: same store, different split.
    other = build_store(model, docs, StoreConfig.from_dict({**cfg.to_dict(), "held_out_fraction": 0.5}), progress=False)
    assert other.path == store.path and other.n_held_out_seq > store.n_held_out_seq
    # Anything that changes content changes the key.
    changed = StoreConfig.from_dict({**cfg.to_dict(), "n_tokens": 700})
    assert store_path(model, docs, changed) != store.path
    assert store_path(model, docs[:-1], cfg) != store.path


def test_resume_after_interruption_equals_uninterrupted_build(model, docs, store, tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    real_write = store_mod._write_shard
    written = []

    def flaky_write(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated interruption")
        written.append(args[1])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(store_mod, "_write_shard", flaky_write)
    with pytest.raises(KeyboardInterrupt):
        build_store(model, docs, cfg, progress=False)
    path = store_path(model, docs, cfg)
    manifest = json.loads((path / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 2
    with pytest.raises(ValueError, match="incomplete"):
        ActivationStore.open(path)
    # A temporary file left by a crash mid-write is cleaned up, never read.
    (path / HOOKS[0] / ".shard_00002.safetensors.tmp-999").write_bytes(b"half a file")

    written.clear()
    monkeypatch.setattr(store_mod, "_write_shard", lambda *a, **k: written.append(a[1]) or real_write(*a, **k))
    resumed = build_store(model, docs, cfg, progress=False)
    assert written == list(range(2, len(store.manifest["shards"])))  # only the missing shards
    assert not list(path.rglob(".*.tmp-*"))
    assert torch.equal(resumed.tokens(), store.tokens())
    for hook in HOOKS:
        assert torch.equal(resumed.load(hook, "all", device="cpu"), store.load(hook, "all", device="cpu"))


def test_build_from_the_offline_corpus_records_sources(model, tmp_path):
    # Short documents, so that a few hundred tokens already sample most sources.
    corpus = CorpusConfig(target_tokens=4000, max_doc_chars=200, seed=3)
    built = build_store(model, corpus, tiny_cfg(tmp_path), progress=False)
    by_source = built.tokens_by_source
    assert sum(by_source.values()) == built.n_seq * 31
    assert len(by_source) >= 4 and set(by_source) <= set(DEFAULT_FRACTIONS)
    assert built.manifest["corpus"]["config"] == corpus.to_dict()
    assert len(built.manifest["corpus"]["labelled_ids"]) == 98  # half of the 196 labelled texts


def test_bad_inputs_get_clear_errors(model, docs, tmp_path):
    with pytest.raises(ValueError, match="model_name"):
        build_store(model, docs, tiny_cfg(tmp_path, model_name="gpt2"), progress=False)
    with pytest.raises(ValueError, match="do not exist"):
        build_store(model, docs, tiny_cfg(tmp_path, hooks=("blocks.99.hook_resid_pre",)), progress=False)
    with pytest.raises(TypeError, match="single string"):
        build_store(model, "just one text", tiny_cfg(tmp_path), progress=False)
    with pytest.raises(ValueError, match="raise CorpusConfig.target_tokens"):
        build_store(model, docs[:2], tiny_cfg(tmp_path), progress=False)


# ---------------------------------------------------------------------------------------
# Serving batches.


def epoch(store, **kw):
    kw = {"device": "cpu", **kw}
    return list(store.iter_batches(HOOKS[0], kw.pop("batch_size", 16), **kw))


def test_every_training_row_exactly_once_per_epoch(store):
    batches = epoch(store, seed=1, epochs=2)
    n = store.batches_per_epoch(16)
    assert len(batches) == 2 * n and all(b.dtype == torch.float32 for b in batches)
    train = store.load(HOOKS[0], "train", device="cpu")
    for e in range(2):
        rows = torch.cat(batches[e * n : (e + 1) * n])
        assert rows.shape == train.shape
        assert row_set(rows) == row_set(train)
    # The two epochs are shuffled differently, and neither is the storage order.
    assert not torch.equal(torch.cat(batches[:n]), torch.cat(batches[n:]))
    assert not torch.equal(torch.cat(batches[:n]), train)


def test_unshuffled_batches_follow_storage_order_and_drop_last(store):
    train = store.load(HOOKS[0], "train", device="cpu")
    assert torch.equal(torch.cat(epoch(store, shuffle=False)), train)
    full = epoch(store, batch_size=50, drop_last=True)
    assert all(len(b) == 50 for b in full) and len(full) == store.n_rows("train") // 50


def test_held_out_rows_are_never_served_for_training(store):
    # Rows are compared as multisets: a token right after BOS has the same activation
    # wherever it occurs, so identical rows do exist.
    served = row_set(torch.cat(epoch(store, seed=5)))
    train = row_set(store.load(HOOKS[0], "train", device="cpu"))
    held = row_set(store.load(HOOKS[0], "held_out", device="cpu"))
    assert served == train
    assert sorted(train + held) == row_set(store.load(HOOKS[0], "all", device="cpu"))
    seq, _ = store.row_positions("held_out")
    assert len(held) == len(seq) > 0 and (seq >= store.n_train_seq).all()
    assert store.n_train_seq == store.n_seq - 4  # ceil(20 sequences * 0.2)
    assert row_set(torch.cat(epoch(store, split="held_out", shuffle=False))) == held


def test_shuffle_buffer_respects_the_memory_budget(store):
    largest = max(s["n_rows"] for s in store.manifest["shards"])
    budget = (2 * largest + 15) * ROW_BYTES  # two shards plus the carried rows
    it = store.iter_batches(HOOKS[0], 16, seed=0, memory_budget_bytes=budget, device="cpu")
    rows = torch.cat(list(it))
    assert it.buffer_rows == 2 * largest + 15
    assert 0 < it.peak_buffer_rows <= it.buffer_rows
    assert len(it._groups(0)) >= 2  # the budget really forced several buffers
    assert row_set(rows) == row_set(store.load(HOOKS[0], "train", device="cpu"))
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        store.iter_batches(HOOKS[0], 16, memory_budget_bytes=largest * ROW_BYTES, device="cpu")


def test_batches_are_deterministic_per_seed(store):
    a, b, c = (epoch(store, seed=s, memory_budget_bytes=300 * ROW_BYTES) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_start_batch_resumes_to_the_identical_suffix(store):
    budget = 300 * ROW_BYTES
    full = epoch(store, seed=3, epochs=3, memory_budget_bytes=budget)
    n = store.batches_per_epoch(16)
    for k in (0, 1, 5, n - 1, n, n + 2, 3 * n - 1):
        it = store.iter_batches(HOOKS[0], 16, seed=3, epochs=3, start_batch=k, memory_budget_bytes=budget, device="cpu")
        assert it.position == k
        rest = list(it)
        assert len(rest) == len(full) - k
        assert all(torch.equal(x, y) for x, y in zip(rest, full[k:]))
        assert it.position == len(full)


def test_state_dict_and_endless_epochs_continue_the_same_stream(store):
    full = epoch(store, seed=2, epochs=3)
    it = store.iter_batches(HOOKS[0], 16, seed=2, epochs=None, device="cpu")
    head = [next(it) for _ in range(len(full) - 3)]
    state = json.loads(json.dumps(it.state_dict()))  # as a checkpoint would store it
    again = store.iter_batches(**state, device="cpu")
    tail = [next(again) for _ in range(3)] + [next(again)]  # and on into a fourth epoch
    assert all(torch.equal(x, y) for x, y in zip(head + tail[:3], full))
    assert torch.equal(tail[3], epoch(store, seed=2, epochs=4)[len(full)])
