"""saelab.store.reader: a built store opens again from its manifest with the same contents, and
its held-out rows are never served for training."""

from __future__ import annotations

import json

import pytest
import torch

from saelab.store import ActivationStore
from saelab.store.config import STORE_VERSION
from tests._tiny_model import D_MODEL
from tests.store._helpers import HOOKS, epoch, row_set


def test_manifest_round_trip(store):
    opened = ActivationStore.open(store.path)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["version"] == STORE_VERSION
    assert opened.key == store.key == manifest["key"]
    assert opened.config == store.config and opened.hooks == HOOKS
    assert opened.n_rows("all") == manifest["n_rows"] == sum(s["n_rows"] for s in manifest["shards"])
    assert [opened.d_in(h) for h in HOOKS] == [D_MODEL, D_MODEL]
    assert opened.dtype == torch.float16
    assert manifest["corpus"]["tokens_by_source"]["docs"] == opened.n_seq * 31
    for shard in manifest["shards"]:
        for hook in HOOKS:
            assert (store.path / shard["files"][hook]).is_file()
    train = store.load(HOOKS[0], "train", device="cpu")
    torch.testing.assert_close(opened.load(HOOKS[0], "train", device="cpu"), train)
    with pytest.raises(ValueError, match="valid"):
        opened.load("blocks.2.hook_resid_pre")


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
