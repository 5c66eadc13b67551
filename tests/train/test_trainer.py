"""The training loop: a run killed part-way (SIGKILL, stop_at, a damaged checkpoint) and
resumed ends where an uninterrupted run ends; history, normalisation and errors."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saelab.train import config_for
from saelab.train.checkpoint import checkpoint_path, list_checkpoints
from saelab.train.trainer import RunConfig, checkpoint_folder, fit
from tests._synthetic import synthetic_source

from ._helpers import DEVICES
from ._resume_config import CFG

WORKER = Path(__file__).parent / "_resume_worker.py"


def _source(cfg=CFG):
    return synthetic_source(cfg.d_in, cfg.batch_size, seed=7)


def _assert_same_weights(result, reference) -> None:
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(result.sae.state_dict()[name], value, msg=f"{name} differs after resume")


def _run_worker(ckpt: Path, out: Path, delay: float) -> subprocess.Popen:
    # The worker imports its config from this folder, and saelab from the checkout.
    paths = [str(Path(__file__).parent), str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), str(delay)], env=env)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    reference = fit(CFG, _source(), RunConfig(progress=False))

    ckpt, out = tmp_path / "ckpt", tmp_path / "final.pt"
    worker = _run_worker(ckpt, out, delay=0.05)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name >= "ckpt-000000010.pt" for p in list_checkpoints(ckpt)):
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    assert not out.exists()
    killed_at = max(int(p.name[5:14]) for p in list_checkpoints(ckpt))
    assert 10 <= killed_at < CFG.total_steps
    for path in list_checkpoints(ckpt):  # every file a resume could pick is complete, and safe to load
        assert torch.load(path, weights_only=True)["step"] == int(path.name[5:14])

    resumed = _run_worker(ckpt, out, delay=0.0)
    assert resumed.wait(timeout=120) == 0
    final = torch.load(out, weights_only=True)
    assert final["resumed_from"] == killed_at
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(final["state"][name], value, msg=f"{name} differs after resume")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_stop_at_then_resume_matches_uninterrupted(tmp_path, activation, device):
    fields = {k: v for k, v in CFG.to_dict().items() if k != "activation"}
    cfg = config_for(activation, **{**fields, "device": device})
    reference = fit(cfg, _source(), RunConfig(progress=False, log_every=10))
    run = RunConfig(checkpoint_dir=str(tmp_path), checkpoint_every=100, progress=False, log_every=10)
    first = fit(cfg, _source(), dataclasses.replace(run, stop_at=25))
    assert first.steps_done == 25 and list(first.history["step"]) == [10, 20]
    second = fit(cfg, _source(), run)
    assert second.resumed_from == 25 and second.steps_done == cfg.total_steps
    assert list(second.history["step"]) == [10, 20, 30, 40]
    _assert_same_weights(second, reference)


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    """The newest file cut short (a full disk, a bad copy): resume warns, continues from the
    one before, and still ends where an uninterrupted run ends."""
    reference = fit(CFG, _source(), RunConfig(progress=False, log_every=10))
    run = RunConfig(checkpoint_dir=str(tmp_path), checkpoint_every=10, progress=False, log_every=10)
    fit(CFG, _source(), dataclasses.replace(run, stop_at=30))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000020.pt", "ckpt-000000030.pt"]
    newest = checkpoint_path(tmp_path, 30)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="ckpt-000000030.pt does not load"):
        resumed = fit(CFG, _source(), run)
    assert resumed.resumed_from == 20 and resumed.steps_done == CFG.total_steps
    assert list(resumed.history["step"]) == [10, 20, 30, 40]
    _assert_same_weights(resumed, reference)


def test_resume_refuses_a_different_config(tmp_path):
    fit(CFG, _source(), RunConfig(checkpoint_dir=str(tmp_path), checkpoint_every=10, progress=False))
    other = dataclasses.replace(CFG, k=5)
    with pytest.raises(ValueError, match="different TrainConfig"):
        fit(other, _source(), RunConfig(checkpoint_dir=str(tmp_path), progress=False))


def test_checkpoint_folder_is_per_config():
    root = Path("/ckpt")
    folder = checkpoint_folder(root, CFG)
    assert folder.parent == root and folder.name.startswith("topk-blocks.20.hook_resid_pre-")
    assert folder == checkpoint_folder(root, dataclasses.replace(CFG))
    assert folder != checkpoint_folder(root, dataclasses.replace(CFG, k=5))
    batchtopk = config_for("batchtopk", **{k: v for k, v in CFG.to_dict().items() if k != "activation"})
    assert checkpoint_folder(root, batchtopk).name.startswith("batchtopk-")


def test_fit_learns_and_reports_history():
    result = fit(CFG, _source(), RunConfig(progress=False, log_every=10))
    assert list(result.history["step"]) == [10, 20, 30, 40]
    assert {"loss", "loss_mse", "loss_aux", "l0", "explained_variance", "lr"} <= set(result.history.columns)
    assert result.history["explained_variance"].iloc[-1] > result.history["explained_variance"].iloc[0]
    assert result.final["l0"] == pytest.approx(CFG.k, abs=1e-6)


def test_source_that_runs_out_is_explained():
    def short(start):
        return iter([torch.randn(CFG.batch_size, CFG.d_in)] * 3)

    with pytest.raises(ValueError, match="ran out at step 3"):
        fit(CFG, short, RunConfig(progress=False))


def test_stop_at_needs_a_checkpoint_dir():
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        RunConfig(stop_at=5)


def test_run_config_lists_every_problem():
    with pytest.raises(ValueError, match="log_every must be >= 1.*needs a checkpoint_dir"):
        RunConfig(log_every=0, stop_at=5)


def test_inputs_are_normalised_to_mean_norm_sqrt_d_in():
    source = _source()
    big = lambda start: (100 * b for b in source(start))  # noqa: E731 (a scaled copy of the source)
    result = fit(CFG, big, RunConfig(progress=False))
    scale = float(result.sae.input_scale)
    assert float((scale * next(big(0))).norm(dim=-1).mean()) == pytest.approx(math.sqrt(CFG.d_in), rel=0.05)
    # Measured once, before training, on the first norm_batches batches: sqrt(d_in) / their mean norm.
    first = torch.cat(list(itertools.islice(big(0), CFG.norm_batches))).double()
    assert scale == pytest.approx(math.sqrt(CFG.d_in) / float(first.norm(dim=-1).mean()), rel=1e-6)
    plain = fit(dataclasses.replace(CFG, normalize_activations="none"), big, RunConfig(progress=False))
    assert float(plain.sae.input_scale) == 1.0


def test_normalisation_makes_training_scale_free():
    """The same data at 100x the scale trains to the same L0 and explained variance."""
    small = fit(CFG, _source(), RunConfig(progress=False))
    src = _source()
    large = fit(CFG, lambda start: (100 * b for b in src(start)), RunConfig(progress=False))
    assert large.final["explained_variance"] == pytest.approx(small.final["explained_variance"], abs=1e-4)
    x = next(src(0))
    torch.testing.assert_close(large.sae.encode(100 * x), small.sae.encode(x), atol=1e-3, rtol=1e-3)
