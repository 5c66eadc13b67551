"""The two activation sources of the examples pass: a store's split read back per (sequence,
position) matches running the model, text batches do not change a text's activations, and
texts are taken whole unless a cap is asked for, which says what it drops."""

from __future__ import annotations

import warnings

import pytest
import torch

import saelab
from saelab.autointerp.sources import StoreSource, TextSource
from saelab.extract.hooks import hook_activations
from saelab.extract.tokens import TextTooLongWarning
from saelab.store import StoreConfig, build_store

HOOK = "blocks.1.hook_resid_pre"


def tiny_store(model, root):
    """~600 rows of 32-token sequences in ~5 shards, the last 25% of sequences held out."""
    cfg = StoreConfig(hooks=(HOOK,), seq_len=32, n_tokens=600, shard_tokens=124, model_batch_size=4,
                      held_out_fraction=0.25, cache_root=str(root))  # fmt: skip
    docs = saelab.load_dataset()["text"].tolist()[::3]
    return build_store(model, docs, cfg, progress=False)


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    return tiny_store(model, tmp_path_factory.getbasetemp() / "autointerp-store")


@pytest.mark.slow
@pytest.mark.parametrize("split", ["held_out", "train"])
def test_store_source_matches_the_model(model, store, split):
    source = StoreSource(store, HOOK, split, seqs_per_chunk=3)
    assert source.n_chunks == -(-(source.hi - source.lo) // 3) and source.n_chunks > 1
    mask = store.keep_mask()
    assert source.n_tokens == int(mask[source.lo : source.hi].sum()) == store.n_rows(split)
    seen = []
    for i in range(source.n_chunks):
        chunk = source.chunk(i)
        seen += chunk.seq.tolist()
        assert torch.equal(chunk.valid, mask[chunk.seq])
        assert torch.equal(chunk.tokens, store.tokens("all")[chunk.seq])
        ones = torch.ones_like(chunk.tokens)
        expected = hook_activations(model, HOOK, chunk.tokens, ones).float()
        got = chunk.acts[chunk.valid]
        want = expected[chunk.valid]
        torch.testing.assert_close(got, want, rtol=2e-3, atol=1e-2)  # fp16 storage
        assert (chunk.acts[~chunk.valid] == 0).all()
    assert seen == list(range(source.lo, source.hi))
    assert source.token_ids(source.lo) == store.tokens("all")[source.lo].tolist()


@pytest.mark.slow
def test_store_source_limits_and_errors(store):
    source = StoreSource(store, HOOK, max_sequences=2, seqs_per_chunk=64)
    assert source.hi - source.lo == 2 and source.n_chunks == 1
    assert source.key != StoreSource(store, HOOK).key != StoreSource(store, HOOK, "train").key
    with pytest.raises(ValueError, match="not in the store"):
        StoreSource(store, "blocks.2.hook_resid_pre")
    with pytest.raises(ValueError, match="seqs_per_chunk"):
        StoreSource(store, HOOK, seqs_per_chunk=0)
    with pytest.raises(IndexError, match="out of range"):
        source.chunk(1)


@pytest.mark.slow
def test_text_source_batches_do_not_change_activations(model):
    texts = [
        "A short one.",
        "A much longer text that goes on for quite a few more tokens than the first.",
        "Mid length text.",
    ]
    one = TextSource(model, texts, HOOK, batch_size=1)
    all3 = TextSource(model, texts, HOOK, batch_size=3)
    assert one.key == all3.key and one.n_chunks == 3 and all3.n_chunks == 1
    assert one.n_tokens == sum(len(one.token_ids(i)) - 1 for i in range(3))  # BOS is never valid
    batch = all3.chunk(0)
    assert int(batch.valid.sum()) == one.n_tokens
    assert not batch.valid[:, 0].any()
    for i in range(3):
        alone = one.chunk(i)
        n = alone.valid.shape[1]
        assert torch.equal(batch.valid[i, :n], alone.valid[0]) and not batch.valid[i, n:].any()
        torch.testing.assert_close(batch.acts[i, :n][alone.valid[0]], alone.acts[0][alone.valid[0]], rtol=1e-4,
                                   atol=1e-4)  # fmt: skip
    with pytest.raises(IndexError):
        one.chunk(3)
    assert TextSource(model, texts[:2], HOOK).key != one.key


def test_text_source_takes_whole_texts_and_a_cap_counts_what_it_drops(model):
    texts = ["A short one.", "word " * 300, "Another short one."]  # the long one passes 256 tokens
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTooLongWarning)
        whole = TextSource(model, texts, HOOK)
    lengths = [len(whole.token_ids(i)) for i in range(3)]
    assert lengths[1] > 300 and whole.n_tokens == sum(lengths) - 3  # BOS is never valid
    with pytest.warns(TextTooLongWarning) as caught:
        capped = TextSource(model, texts, HOOK, max_length=64)
    assert [len(capped.token_ids(i)) for i in range(3)] == [lengths[0], 64, lengths[2]]
    assert capped.n_tokens == whole.n_tokens - (lengths[1] - 64) and capped.key != whole.key
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("1 of 3 text(s) exceed max_length=64 tokens")
    assert f"dropping {lengths[1] - 64} token(s) (indices [1])" in message
