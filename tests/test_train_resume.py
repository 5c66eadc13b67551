"""A run killed with SIGKILL part-way and resumed ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saelab.train.checkpoint import list_checkpoints
from saelab.train.synthetic import synthetic_source
from saelab.train.trainer import RunConfig, fit

sys.path.insert(0, str(Path(__file__).parent))
from tests_resume_config import CFG  # noqa: E402

WORKER = Path(__file__).parent / "_resume_worker.py"


def _run_worker(ckpt: Path, out: Path, delay: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(WORKER), str(ckpt), str(out), str(delay)], env=env)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    reference = fit(CFG, synthetic_source(CFG.d_in, CFG.batch_size, seed=7), RunConfig(progress=False))

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
    for path in list_checkpoints(ckpt):  # every file a resume could pick is complete
        assert torch.load(path, weights_only=False)["step"] == int(path.name[5:14])

    resumed = _run_worker(ckpt, out, delay=0.0)
    assert resumed.wait(timeout=120) == 0
    final = torch.load(out)
    assert final["resumed_from"] == killed_at
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(final["state"][name], value, msg=f"{name} differs after resume")


def test_resume_refuses_a_different_config(tmp_path):
    source = synthetic_source(CFG.d_in, CFG.batch_size, seed=7)
    fit(CFG, source, RunConfig(checkpoint_dir=str(tmp_path), checkpoint_every=10, progress=False))
    other = type(CFG).from_dict({**CFG.to_dict(), "k": 5})
    with pytest.raises(ValueError, match="different TrainConfig"):
        fit(other, source, RunConfig(checkpoint_dir=str(tmp_path), progress=False))


def test_fit_learns_and_reports_history():
    result = fit(CFG, synthetic_source(CFG.d_in, CFG.batch_size, seed=7), RunConfig(progress=False, log_every=10))
    assert list(result.history["step"]) == [10, 20, 30, 40]
    assert result.history["explained_variance"].iloc[-1] > result.history["explained_variance"].iloc[0]
    assert result.final["l0"] == pytest.approx(CFG.k, abs=1e-6)


def test_source_that_runs_out_is_explained():
    def short(start):
        return iter([torch.randn(CFG.batch_size, CFG.d_in)] * 3)

    with pytest.raises(ValueError, match="ran out at step 3"):
        fit(CFG, short, RunConfig(progress=False))


def test_stop_at_then_resume_matches_uninterrupted(tmp_path):
    source = synthetic_source(CFG.d_in, CFG.batch_size, seed=7)
    reference = fit(CFG, source, RunConfig(progress=False, log_every=10))
    run = RunConfig(checkpoint_dir=str(tmp_path), checkpoint_every=100, progress=False, log_every=10)
    first = fit(CFG, source, RunConfig(**{**run.__dict__, "stop_at": 25}))
    assert first.steps_done == 25 and list(first.history["step"]) == [10, 20]
    second = fit(CFG, source, run)
    assert second.resumed_from == 25 and second.steps_done == CFG.total_steps
    assert list(second.history["step"]) == [10, 20, 30, 40]
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(second.sae.state_dict()[name], value, msg=f"{name} differs after stop_at + resume")


def test_stop_at_needs_a_checkpoint_dir():
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        RunConfig(stop_at=5)


def test_inputs_are_normalised_to_mean_norm_sqrt_d_in():
    import math

    from saelab.train.trainer import estimate_input_scale

    source = synthetic_source(CFG.d_in, CFG.batch_size, seed=7)
    scale = estimate_input_scale(source(0), CFG.d_in, CFG.norm_batches)
    batch = next(source(0))
    assert float((scale * batch).norm(dim=-1).mean()) == pytest.approx(math.sqrt(CFG.d_in), rel=0.05)
    big = lambda start: (100 * b for b in source(start))  # noqa: E731 (a scaled copy of the source)
    result = fit(CFG, big, RunConfig(progress=False))
    assert float(result.sae.input_scale) == pytest.approx(scale / 100, rel=1e-6)
    plain = fit(type(CFG).from_dict({**CFG.to_dict(), "normalize_activations": "none"}), big, RunConfig(progress=False))
    assert float(plain.sae.input_scale) == 1.0
    with pytest.raises(ValueError, match="normalize_activations"):
        type(CFG).from_dict({**CFG.to_dict(), "normalize_activations": "layer_norm"})


def test_normalisation_makes_training_scale_free():
    """The same data at 100x the scale trains to the same L0 and explained variance."""
    small = fit(CFG, synthetic_source(CFG.d_in, CFG.batch_size, seed=7), RunConfig(progress=False))
    src = synthetic_source(CFG.d_in, CFG.batch_size, seed=7)
    large = fit(CFG, lambda start: (100 * b for b in src(start)), RunConfig(progress=False))
    assert large.final["explained_variance"] == pytest.approx(small.final["explained_variance"], abs=1e-4)
    x = next(src(0))
    torch.testing.assert_close(large.sae.encode(100 * x), small.sae.encode(x), atol=1e-3, rtol=1e-3)
