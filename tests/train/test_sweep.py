"""A sweep trains several SAEs on one pass over the batches: each member ends where the same
config trained alone ends; batches are read once; a stopped, half-saved or damaged sweep
resumes from its last consistent step; bad sweeps are refused with a clear error."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from saelab.train import config_for
from saelab.train.checkpoint import checkpoint_path, list_checkpoints
from saelab.train.sweep import check_sweep, fit_sweep, member_name
from saelab.train.trainer import RunConfig, TrainResult, fit
from tests._synthetic import synthetic_source
from tests.train._helpers import DEVICES

_BASE = dict(d_in=16, d_sae=48, batch_size=64, total_steps=30, lr=3e-3, lr_warmup_steps=3, lr_decay_steps=6,
             dead_tokens_threshold=256, seed=3, device="cpu")  # fmt: skip
CONFIGS = [
    config_for("topk", k=2, **_BASE),
    config_for("topk", k=6, **_BASE),
    config_for("batchtopk", k=4, **{**_BASE, "d_sae": 32}),
    config_for("relu", l1_coefficient=0.3, **_BASE),
]
RUN = RunConfig(progress=False, log_every=5, checkpoint_every=10)


def _source(counter: list[int] | None = None):
    inner = synthetic_source(16, 64, seed=7)

    def source(start: int) -> Iterator[Tensor]:
        for batch in inner(start):
            if counter is not None:
                counter.append(start)
            yield batch

    return source


def _assert_same(result: TrainResult, reference: TrainResult) -> None:
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(
            result.sae.state_dict()[name], value, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.fixture(scope="module")
def alone() -> list[TrainResult]:
    return [fit(cfg, _source(), RUN) for cfg in CONFIGS]


def test_each_member_equals_its_config_trained_alone_and_batches_are_read_once(alone) -> None:
    reads: list[int] = []
    sweep = fit_sweep(CONFIGS, _source(reads), RUN)
    assert list(sweep.members) == [member_name(c) for c in CONFIGS]
    for result, reference in zip(sweep.results, alone, strict=True):
        _assert_same(result, reference)
        assert list(result.history["step"]) == [5, 10, 15, 20, 25, 30]
    # One read per step for all four members, and one input-norm estimate that they share.
    assert len(reads) == CONFIGS[0].total_steps + CONFIGS[0].norm_batches
    assert sweep.steps_done == 30 and sweep.resumed_from is None
    # Stepped in turn, the members share their scratch memory: one buffer per shape, not per member.
    scratch = sweep.results[0].sae._scratch  # noqa: SLF001
    assert all(r.sae._scratch is scratch for r in sweep.results)  # noqa: SLF001
    assert sorted(key[1] for key in scratch) == [32, 48]


@pytest.mark.parametrize("device", DEVICES)
def test_a_mixed_sweep_on_each_device_matches_its_members_alone(device) -> None:
    configs = [dataclasses.replace(c, device=device, total_steps=12) for c in (CONFIGS[1], CONFIGS[2])]
    configs.append(config_for("matryoshka_batchtopk", k=4, prefix_sizes=(12,), **{**_BASE, "total_steps": 12,
                                                                                  "device": device}))  # fmt: skip
    sweep = fit_sweep(configs, _source(), RUN)
    for cfg, result in zip(configs, sweep.results, strict=True):
        alone = fit(cfg, _source(), RUN)
        assert result.sae.W_enc.device.type == torch.device(device).type
        for name, value in alone.sae.state_dict().items():
            # CUDA's atomic scatter-adds may sum in another order; CPU is bit for bit.
            tol = 0 if device == "cpu" else 1e-5
            torch.testing.assert_close(result.sae.state_dict()[name], value, rtol=tol, atol=tol)


def test_a_stopped_sweep_resumes_where_an_uninterrupted_one_ends(tmp_path, alone) -> None:
    run = dataclasses.replace(RUN, checkpoint_dir=str(tmp_path))
    first = fit_sweep(CONFIGS, _source(), dataclasses.replace(run, stop_at=20))
    assert first.steps_done == 20 and (tmp_path / "sweep.json").exists()
    for name in first.members:
        assert [p.name for p in list_checkpoints(tmp_path / name)] == ["ckpt-000000010.pt", "ckpt-000000020.pt"]
    resumed = fit_sweep(CONFIGS, _source(), run)
    assert resumed.resumed_from == 20
    for result, reference in zip(resumed.results, alone, strict=True):
        _assert_same(result, reference)


def test_a_half_saved_or_damaged_step_sends_every_member_back(tmp_path, alone) -> None:
    run = dataclasses.replace(RUN, checkpoint_dir=str(tmp_path))
    fit_sweep(CONFIGS, _source(), dataclasses.replace(run, stop_at=20))
    names = [member_name(c) for c in CONFIGS]
    checkpoint_path(tmp_path / names[1], 20).unlink()  # killed before this member saved step 20
    damaged = checkpoint_path(tmp_path / names[2], 20)  # and another's file cut short
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="does not load"):
        resumed = fit_sweep(CONFIGS, _source(), run)
    assert resumed.resumed_from == 10
    for result, reference in zip(resumed.results, alone, strict=True):
        _assert_same(result, reference)


def test_a_sweep_with_other_members_does_not_resume_into_the_folder(tmp_path) -> None:
    run = dataclasses.replace(RUN, checkpoint_dir=str(tmp_path), stop_at=10)
    fit_sweep(CONFIGS[:2], _source(), run)
    with pytest.raises(ValueError, match="holds a sweep of other members"):
        fit_sweep(CONFIGS[:3], _source(), run)


def test_bad_sweeps_are_refused() -> None:
    with pytest.raises(ValueError, match="The sweep is empty"):
        check_sweep([])
    with pytest.raises(ValueError, match="must share hook_name"):
        check_sweep([CONFIGS[0], dataclasses.replace(CONFIGS[1], hook_name="blocks.3.hook_resid_pre")])
    with pytest.raises(ValueError, match="must share d_in"):
        check_sweep([CONFIGS[0], config_for("topk", k=2, **{**_BASE, "d_in": 8})])
    with pytest.raises(ValueError, match="must share batch_size"):
        check_sweep([CONFIGS[0], dataclasses.replace(CONFIGS[1], batch_size=32)])
    with pytest.raises(ValueError, match="repeats a member"):
        check_sweep([CONFIGS[0], CONFIGS[0]])


def test_prefix_explained_variance_reads_the_first_latents_alone() -> None:
    from saelab.train.sweep_eval import prefix_explained_variance

    result = fit(CONFIGS[1], _source(), RUN)
    x = next(_source()(100))
    evs = prefix_explained_variance(result.sae, x, [8, 48])
    with torch.no_grad():
        full = result.sae.decode(result.sae.encode(x))
    assert evs[48] == pytest.approx(float(1 - (x - full).pow(2).sum() / (x - x.mean(0)).pow(2).sum()), abs=1e-5)
    assert evs[8] < evs[48]
    with pytest.raises(ValueError, match="prefix sizes must lie in"):
        prefix_explained_variance(result.sae, x, [0])


def test_a_finished_sweep_in_its_folder_is_loaded_not_trained_again(tmp_path) -> None:
    from saelab.train.sweep import sweep_folder

    folder = sweep_folder(tmp_path, CONFIGS)
    assert folder == sweep_folder(tmp_path, list(CONFIGS)) != sweep_folder(tmp_path, CONFIGS[:2])
    run = dataclasses.replace(RUN, checkpoint_dir=str(folder))
    first = fit_sweep(CONFIGS, _source(), run)
    reads: list[int] = []
    again = fit_sweep(CONFIGS, _source(reads), run)
    assert again.resumed_from == CONFIGS[0].total_steps and not reads
    for a, b in zip(again.results, first.results, strict=True):
        _assert_same(a, b)
        assert a.history.equals(b.history)


def test_each_member_logs_to_its_own_wandb_run(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = dataclasses.replace(RUN, checkpoint_dir=str(tmp_path / "sweep"), use_wandb=True, wandb_project="saelab-test")
    fit_sweep(CONFIGS[:2], _source(), run)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs  # one live run per member, none finished early by the next
    for folder in runs:
        assert list(folder.glob("*.wandb")), f"{folder} holds no log"
