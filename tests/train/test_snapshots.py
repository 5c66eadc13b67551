"""Training snapshots: the dictionary kept every N steps (the initial one and the last one
included), never pruned, the same after a resume as in one go, and loadable as a trainable or
a SAELens SAE."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from saelab.train import list_snapshots, load_snapshots, make_sae
from saelab.train.checkpoint import list_checkpoints
from saelab.train.snapshots import Snapshot, save_snapshot, snapshot_folder
from saelab.train.trainer import RunConfig, fit
from tests._synthetic import synthetic_source

from ._resume_config import CFG

CFG_25 = dataclasses.replace(CFG, total_steps=25)


def _source(cfg=CFG):
    return synthetic_source(cfg.d_in, cfg.batch_size, seed=7)


def _run(folder, **kw) -> RunConfig:
    return RunConfig(checkpoint_dir=str(folder), checkpoint_every=5, snapshot_every=10, progress=False, **kw)


def test_snapshots_every_n_steps_from_the_initial_dictionary_to_the_last(tmp_path):
    result = fit(CFG_25, _source(), _run(tmp_path))
    snapshots = load_snapshots(tmp_path)
    assert [s.step for s in snapshots] == [0, 10, 20, 25]
    assert [p.name for p in list_snapshots(tmp_path)] == [f"snapshot-{s:09d}.pt" for s in (0, 10, 20, 25)]
    assert len(list_checkpoints(tmp_path)) == 2  # checkpoints are pruned, snapshots are not
    torch.testing.assert_close(snapshots[0].sae.W_dec, make_sae(CFG_25).W_dec)  # before any step
    for name, value in result.sae.state_dict().items():
        torch.testing.assert_close(snapshots[-1].sae.state_dict()[name], value)
    assert not torch.allclose(snapshots[1].sae.W_dec, snapshots[0].sae.W_dec)
    assert all(not s.sae.training for s in snapshots)


def test_a_resumed_run_keeps_and_continues_the_same_snapshots(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    fit(CFG, _source(), _run(whole))
    fit(CFG, _source(), _run(split, stop_at=15))
    assert [s.step for s in load_snapshots(split)] == [0, 10]
    fit(CFG, _source(), _run(split))
    reference, resumed = load_snapshots(whole), load_snapshots(split)
    assert [s.step for s in resumed] == [s.step for s in reference] == [0, 10, 20, 30, 40]
    for ref, res in zip(reference, resumed, strict=True):
        for name, value in ref.sae.state_dict().items():
            torch.testing.assert_close(res.sae.state_dict()[name], value, msg=f"step {ref.step}: {name} differs")


def test_a_snapshot_is_a_sae_lens_sae_that_encodes_the_same(tmp_path):
    fit(CFG_25, lambda start: (50 * b for b in _source()(start)), _run(tmp_path))
    snapshot = load_snapshots(snapshot_folder(tmp_path))[2]
    assert isinstance(snapshot, Snapshot) and snapshot.W_dec is snapshot.sae.W_dec
    x = 50 * next(_source()(0))
    lens = snapshot.to_sae_lens()
    torch.testing.assert_close(lens.encode(x), snapshot.sae.encode(x), atol=1e-4, rtol=1e-4)


def test_snapshot_options_are_checked():
    with pytest.raises(ValueError, match="snapshot_every must be >= 1 and needs a checkpoint_dir"):
        RunConfig(snapshot_every=5)
    with pytest.raises(ValueError, match="snapshot_every must be >= 1"):
        RunConfig(checkpoint_dir="/tmp/x", snapshot_every=0)


def test_a_folder_without_snapshots_is_explained(tmp_path):
    assert list_snapshots(tmp_path) == []
    fit(CFG_25, _source(), RunConfig(checkpoint_dir=str(tmp_path), progress=False))
    with pytest.raises(ValueError, match="No snapshots in .*snapshot_every"):
        load_snapshots(tmp_path)


def test_temporary_files_are_not_snapshots(tmp_path):
    save_snapshot(tmp_path, 3, make_sae(CFG))
    (snapshot_folder(tmp_path) / "snapshot-000000004.pt.123.tmp").write_bytes(b"half")
    assert [s.step for s in load_snapshots(tmp_path)] == [3]


def test_snapshots_of_two_configs_never_mix(tmp_path):
    fit(CFG_25, _source(), _run(tmp_path))
    other = dataclasses.replace(CFG_25, k=5)
    with pytest.raises(ValueError, match="different TrainConfig"):
        fit(other, _source(), _run(tmp_path, resume=False))
    save_snapshot(tmp_path, 30, make_sae(other))
    with pytest.raises(ValueError, match="different training configs"):
        load_snapshots(tmp_path)
