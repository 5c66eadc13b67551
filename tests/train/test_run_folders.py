"""A run's folder: one per config, a run without the snapshots asked for is trained again,
and clearing a folder removes a run's files but never anything else."""

from __future__ import annotations

import pytest
import torch

from saelab.train import RunConfig, config_for, fit, list_snapshots
from saelab.train.checkpoint import list_checkpoints
from saelab.train.run_folders import clear_run, run_folder

D_IN, BATCH, STEPS = 8, 16, 6


def _cfg(seed: int = 0):
    return config_for("topk", d_in=D_IN, d_sae=16, k=2, batch_size=BATCH, total_steps=STEPS, lr=1e-3,
                      lr_warmup_steps=1, lr_decay_steps=1, seed=seed)  # fmt: skip


def _source(start: int):
    gen = torch.Generator().manual_seed(1234 + start)
    while True:
        yield torch.randn(BATCH, D_IN, generator=gen)


def _train(folder, *, snapshot_every=None):
    run = RunConfig(checkpoint_dir=str(folder), checkpoint_every=2, progress=False, snapshot_every=snapshot_every)
    return fit(_cfg(), _source, run)


def test_each_config_has_its_own_folder(tmp_path):
    assert run_folder(tmp_path, _cfg(0)) != run_folder(tmp_path, _cfg(1))
    assert run_folder(tmp_path, _cfg(0)) == run_folder(tmp_path, _cfg(0))
    assert run_folder(tmp_path, _cfg(0)).parent == tmp_path


def test_a_finished_run_without_snapshots_is_trained_again_when_they_are_asked_for(tmp_path):
    folder = run_folder(tmp_path, _cfg())
    _train(folder)
    assert list_checkpoints(folder) and not list_snapshots(folder)
    assert run_folder(tmp_path, _cfg()) == folder and list_checkpoints(folder)  # not asked: kept
    folder = run_folder(tmp_path, _cfg(), snapshots=True)
    assert not folder.exists()
    again = _train(folder, snapshot_every=3)
    assert again.resumed_from is None and list_snapshots(folder)
    # Now it has them: it is kept, and resumed as finished.
    assert list_checkpoints(run_folder(tmp_path, _cfg(), snapshots=True))
    assert _train(folder, snapshot_every=3).resumed_from == STEPS


def test_clearing_a_run_lets_the_next_fit_start_from_step_0(tmp_path):
    folder = tmp_path / "demo"
    _train(folder, snapshot_every=3)
    (folder / "ckpt-000000002.pt.corrupt").write_bytes(b"")  # set aside by a resume: a run's file too
    assert clear_run(folder) == folder and not folder.exists()
    assert clear_run(folder) == folder  # nothing there: nothing to do
    assert _train(folder).resumed_from is None


def test_clearing_refuses_a_folder_that_holds_other_files(tmp_path):
    folder = tmp_path / "mixed"
    _train(folder)
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="notes.txt"):
        clear_run(folder)
    assert (folder / "notes.txt").is_file() and list_checkpoints(folder)
    with pytest.raises(ValueError, match="a file"):
        clear_run(folder / "notes.txt")
