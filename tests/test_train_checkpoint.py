"""Checkpoints are atomic, pruned, and restore RNG state exactly."""

import random

import numpy as np
import pytest
import torch

from saelab.train import checkpoint as ck


def test_round_trip_and_pruning(tmp_path):
    for step in (10, 20, 30):
        ck.save_checkpoint(tmp_path, step, {"weights": torch.full((3,), float(step))}, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt-000000020.pt", "ckpt-000000030.pt"]
    latest = ck.load_latest(tmp_path)
    assert latest.step == 30
    assert torch.equal(latest.state["weights"], torch.full((3,), 30.0))


def test_no_checkpoint_is_none(tmp_path):
    assert ck.load_latest(tmp_path) is None
    assert ck.load_latest(tmp_path / "missing") is None


def test_interrupted_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path, 1, {"x": torch.ones(2)})

    def die_mid_write(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for a kill during torch.save

    monkeypatch.setattr(ck.torch, "save", die_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, 2, {"x": torch.zeros(2)})
    monkeypatch.undo()
    latest = ck.load_latest(tmp_path)
    assert latest.step == 1 and torch.equal(latest.state["x"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))


def test_stray_tmp_files_are_ignored_and_removed(tmp_path):
    ck.save_checkpoint(tmp_path, 5, {"x": torch.ones(1)})
    (tmp_path / "ckpt-000000006.pt.999.tmp").write_bytes(b"garbage from a SIGKILL")
    assert ck.load_latest(tmp_path).step == 5
    assert not list(tmp_path.glob("*.tmp"))


def test_rng_state_restores_every_generator():
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    state = ck.capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    ck.restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
