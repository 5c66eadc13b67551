"""Checkpoints are atomic, pruned, safe to load (weights_only), restore RNG state exactly,
and a damaged newest one gives way to the previous one."""

from __future__ import annotations

import pickle
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
    assert latest is not None and latest.step == 30
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
    assert latest is not None and latest.step == 1 and torch.equal(latest.state["x"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))


def test_stray_tmp_files_are_ignored_and_removed(tmp_path):
    ck.save_checkpoint(tmp_path, 5, {"x": torch.ones(1)})
    (tmp_path / "ckpt-000000006.pt.999.tmp").write_bytes(b"garbage from a SIGKILL")
    latest = ck.load_latest(tmp_path)
    assert latest is not None and latest.step == 5
    assert not list(tmp_path.glob("*.tmp"))


def test_rng_state_restores_every_generator():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    np.random.randn(1)  # leave a cached Gaussian in numpy's state
    state = ck.capture_rng()
    first = (torch.rand(3), np.random.rand(3), np.random.randn(3), random.random(), random.gauss(0, 1))
    ck.restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), np.random.randn(3), random.random(), random.gauss(0, 1))
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[2], again[2]) and first[3:] == again[3:]


def test_a_checkpoint_holds_only_what_loads_safely(tmp_path):
    """RNG states included: torch.load(weights_only=True), which runs no pickled code, reads it."""
    path = ck.save_checkpoint(tmp_path, 3, {"rng": ck.capture_rng(), "cfg": {"betas": [0.9, 0.99]}})
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["cfg"] == {"betas": [0.9, 0.99]}
    ck.restore_rng(state["rng"])


class _Payload:
    """Stands in for an object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    with open(ck.checkpoint_path(tmp_path, 4), "wb") as handle:
        torch.save({"step": 4, "evil": _Payload()}, handle)
    with pytest.raises(pickle.UnpicklingError):
        ck.load_checkpoint(ck.checkpoint_path(tmp_path, 4))
    with pytest.warns(RuntimeWarning, match="does not load"):
        assert ck.load_latest(tmp_path) is None


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    for step in (10, 20):
        ck.save_checkpoint(tmp_path, step, {"x": torch.full((1000,), float(step))})
    newest = ck.checkpoint_path(tmp_path, 20)
    newest.write_bytes(newest.read_bytes()[:300])  # a copy cut short
    with pytest.warns(RuntimeWarning, match="ckpt-000000020.pt does not load"):
        latest = ck.load_latest(tmp_path)
    assert latest is not None and latest.step == 10 and torch.equal(latest.state["x"], torch.full((1000,), 10.0))
    assert "trying the previous one" in caplog.text
    # Moved aside, so pruning can no longer keep it in place of a good checkpoint.
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["ckpt-000000010.pt"]
    assert (tmp_path / "ckpt-000000020.pt.corrupt").exists()


def test_a_file_whose_step_disagrees_with_its_name_is_not_trusted(tmp_path):
    path = ck.save_checkpoint(tmp_path, 7, {"x": torch.ones(1)})
    path.rename(ck.checkpoint_path(tmp_path, 8))
    with pytest.raises(ValueError, match="does not hold the checkpoint of the step its name says"):
        ck.load_checkpoint(ck.checkpoint_path(tmp_path, 8))
