"""saelab.store.batches: shuffled batches that cover every training row once per epoch, within
a memory budget, deterministic per seed, and resumable to the identical stream."""

from __future__ import annotations

import json

import pytest
import torch

from tests.store._helpers import HOOKS, ROW_BYTES, epoch, row_set


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
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_start_batch_resumes_to_the_identical_suffix(store):
    budget = 300 * ROW_BYTES
    full = epoch(store, seed=3, epochs=3, memory_budget_bytes=budget)
    n = store.batches_per_epoch(16)
    for k in (0, 1, 5, n - 1, n, n + 2, 3 * n - 1):
        it = store.iter_batches(HOOKS[0], 16, seed=3, epochs=3, start_batch=k, memory_budget_bytes=budget, device="cpu")
        assert it.position == k
        rest = list(it)
        assert len(rest) == len(full) - k
        assert all(torch.equal(x, y) for x, y in zip(rest, full[k:], strict=True))
        assert it.position == len(full)


def test_state_dict_and_endless_epochs_continue_the_same_stream(store):
    full = epoch(store, seed=2, epochs=3)
    it = store.iter_batches(HOOKS[0], 16, seed=2, epochs=None, device="cpu")
    head = [next(it) for _ in range(len(full) - 3)]
    state = json.loads(json.dumps(it.state_dict()))  # as a checkpoint would store it
    again = store.iter_batches(**state, device="cpu")
    tail = [next(again) for _ in range(3)] + [next(again)]  # and on into a fourth epoch
    assert all(torch.equal(x, y) for x, y in zip(head + tail[:3], full, strict=True))
    assert torch.equal(tail[3], epoch(store, seed=2, epochs=4)[len(full)])


def test_rank_shares_make_up_the_single_process_batches(store):
    """Data-parallel ranks each get their slice of every batch; together, the very batches
    one process gets, resumable from any position."""
    kw = dict(seed=3, epochs=2, drop_last=True, memory_budget_bytes=400 * ROW_BYTES)
    whole = epoch(store, batch_size=16, **kw)
    shares = [epoch(store, batch_size=16, rank=r, world_size=2, **kw) for r in range(2)]
    assert all(len(s) == len(whole) and all(len(b) == 8 for b in s) for s in shares)
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([shares[0][i], shares[1][i]]), batch)
    it = store.iter_batches(HOOKS[0], 16, rank=1, world_size=2, start_batch=5, device="cpu", **kw)
    assert it.state_dict()["rank"] == 1 and torch.equal(next(it), shares[1][5])
    with pytest.raises(ValueError, match="split evenly"):
        store.iter_batches(HOOKS[0], 15, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank must be in"):
        store.iter_batches(HOOKS[0], 16, rank=2, world_size=2)
