"""Data-parallel training across real processes (torch.distributed, gloo on CPU).

Ranks are started as ``torchrun`` starts them (RANK, WORLD_SIZE, MASTER_ADDR, ... in the
environment) and run ``_distributed_worker.py``. Checked here:

* two ranks train the SAE a single process trains from the same global batches (TopK,
  BatchTopK, ReLU), with identical dead-latent statistics and bit-identical replicas; a sweep
  of the three over two ranks equals each trained alone;
* a run resumes from its checkpoints after a rank is SIGKILLed (the surviving rank fails
  instead of hanging), and across world sizes (2 ranks stopped, 1 process resumes; and back);
* a bad launch fails fast with a clear error: ranks with different configs, a rank missing
  MASTER_ADDR, a global batch that does not split over the ranks, a rank that never arrives.

Every wait has a timeout, and the workers' collectives time out after ``TIMEOUT_S``, so a
failure here cannot hang the suite.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from saelab.distributed import Replicas, join
from saelab.train import TrainConfig, config_for
from saelab.train.checkpoint import list_checkpoints
from saelab.train.replicated import share_of
from saelab.train.trainer import RunConfig, TrainResult, fit
from tests._ranks import Job, free_port, launch
from tests._synthetic import synthetic_source

WORKER = Path(__file__).parent / "_distributed_worker.py"
TIMEOUT_S = 30.0
"""The workers' collective timeout: a rank that dies or never comes makes the others raise."""
WAIT_S = 120.0
"""How long a test waits for a job (normally a few seconds) before it calls it hung."""
ATOL = 1e-5
"""Distributed vs single-process weights after 40 steps: measured max |diff| 1.8e-7 (float32
sums taken in another order), so 1e-5 leaves a wide margin yet catches a wrong gradient."""
DATA_SEED = 7

_BASE: dict[str, Any] = dict(
    d_in=16, d_sae=64, batch_size=64, total_steps=40, lr=3e-3, lr_warmup_steps=5, lr_decay_steps=10,
    dead_tokens_threshold=256, seed=3, device="cpu",
)
# k=2 of 64 latents with a 4-batch dead threshold: latents die and AuxK runs in ~a quarter
# of the steps, so the all-reduced firing counts and AuxK are exercised.
CFGS: dict[str, TrainConfig] = {
    "topk": config_for("topk", k=2, **_BASE),
    "batchtopk": config_for("batchtopk", k=2, **_BASE),
    "relu": config_for("relu", l1_coefficient=0.5, **_BASE),
}
RUN = RunConfig(progress=False, log_every=1)


def _source(cfg: TrainConfig):
    return synthetic_source(cfg.d_in, cfg.batch_size, seed=DATA_SEED)


@functools.cache
def _reference(activation: str) -> TrainResult:
    """The uninterrupted single-process run every distributed run must equal."""
    return fit(CFGS[activation], _source(CFGS[activation]), RUN)


def _spec(name: str, cfg: TrainConfig, run: RunConfig = RUN, delay: float = 0.0) -> dict[str, Any]:
    """One training run for the worker (see its docstring)."""
    return {"name": name, "cfg": cfg.to_dict(), "run": run.to_dict(), "delay": delay, "seed": DATA_SEED}


def _launch(
    folder: Path, runs_by_rank: dict[int, list[dict[str, Any]]], world_size: int = 2, timeout_s: float = TIMEOUT_S
) -> Job:
    """Start the ranks in ``runs_by_rank`` (all of a world of ``world_size``, or fewer)."""
    jobs = {rank: {"timeout_s": timeout_s, "out": str(folder), "runs": runs} for rank, runs in runs_by_rank.items()}
    return launch(WORKER, folder, jobs, world_size)


def _result(job: Job, name: str, rank: int) -> dict[str, Any]:
    return torch.load(job.folder / f"{name}-rank{rank}.pt", weights_only=True)


def _max_diff(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    assert set(state) == set(reference)
    return max(float((state[k].double() - v.double()).abs().max()) for k, v in reference.items())


def _assert_equals_reference(state: dict[str, torch.Tensor], reference: TrainResult) -> None:
    for name, value in reference.sae.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")


@dataclass
class Finished:
    """The shared 2-rank job, finished, and the checkpoint folder of its stopped run."""

    job: Job
    stopped_ckpt: Path
    """Where the 2 ranks stopped TopK at step 20 (a single process resumes it)."""


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Finished:
    """One 2-rank job trains every run the comparison tests need, so that the processes'
    start-up (~2.5 s of imports) is paid once: each architecture in full; TopK stopped at
    step 20; TopK resumed from a single process's step-20 checkpoint."""
    root = tmp_path_factory.mktemp("two_ranks")
    cfg = CFGS["topk"]
    stopped, from_one = root / "stopped", root / "from_one"
    fit(cfg, _source(cfg), dataclasses.replace(RUN, checkpoint_dir=str(from_one), stop_at=20))
    runs = [_spec(name, full) for name, full in CFGS.items()]
    runs.append(_spec("stopped", cfg, dataclasses.replace(RUN, checkpoint_dir=str(stopped), stop_at=20)))
    runs.append(_spec("from_one", cfg, dataclasses.replace(RUN, checkpoint_dir=str(from_one))))
    runs.append({**_spec("sweep", cfg), "sweep": [c.to_dict() for c in CFGS.values()]})
    job = _launch(root / "job", {0: runs, 1: runs})
    for activation in CFGS:  # while the ranks train
        _reference(activation)
    codes = job.codes(WAIT_S)
    assert codes == {0: 0, 1: 0}, job.stderr(0) + job.stderr(1)
    return Finished(job, stopped)


@pytest.mark.parametrize("activation", list(CFGS))
def test_two_ranks_equal_one_process(two_ranks, activation):
    reference = _reference(activation)
    ranks = [_result(two_ranks.job, activation, r) for r in (0, 1)]
    for name, value in ranks[0]["state"].items():
        assert torch.equal(ranks[1]["state"][name], value), f"the replicas' {name} differ"
    state = ranks[0]["state"]
    print(f"\n{activation}: max |distributed - single process| = {_max_diff(state, reference.sae.state_dict()):.3g}")
    _assert_equals_reference(state, reference)
    # Firing is counted over the global batch, so the dead-latent statistics agree exactly.
    assert torch.equal(state["tokens_since_fired"], reference.sae.tokens_since_fired)
    history = ranks[0]["history"]
    assert history["step"] == list(range(1, 41)) == list(reference.history["step"])
    assert set(history) == set(reference.history.columns)
    for column in set(history) - {"step"}:
        torch.testing.assert_close(torch.tensor(history[column]), torch.tensor(reference.history[column]), rtol=1e-5,
                                   atol=1e-5, check_dtype=False, msg=lambda m, c=column: f"history {c}: {m}")
    if activation != "relu":  # AuxK ran on dead latents, on the same steps as alone
        aux = torch.tensor(history["loss_aux"]) > 0
        assert aux.any(), "no latent died, so AuxK never ran: lower dead_tokens_threshold"
        assert torch.equal(aux, torch.tensor(reference.history["loss_aux"].to_numpy() > 0))


def test_a_sweep_over_two_ranks_equals_each_member_alone(two_ranks):
    """Every rank trains every member on its share of each batch (data parallel per member)."""
    for i, activation in enumerate(CFGS):
        ranks = [_result(two_ranks.job, f"sweep-{i}", r) for r in (0, 1)]
        for name, value in ranks[0]["state"].items():
            assert torch.equal(ranks[1]["state"][name], value), f"the replicas' {activation} {name} differ"
        _assert_equals_reference(ranks[0]["state"], _reference(activation))


def test_two_ranks_stopped_then_one_process_resumes(two_ranks):
    stopped = [_result(two_ranks.job, "stopped", r) for r in (0, 1)]
    assert [s["steps_done"] for s in stopped] == [20, 20] and stopped[0]["resumed_from"] is None
    assert [p.name for p in list_checkpoints(two_ranks.stopped_ckpt)] == ["ckpt-000000020.pt"]
    cfg = CFGS["topk"]
    resumed = fit(cfg, _source(cfg), dataclasses.replace(RUN, checkpoint_dir=str(two_ranks.stopped_ckpt)))
    assert resumed.resumed_from == 20 and resumed.steps_done == cfg.total_steps
    assert list(resumed.history["step"]) == list(range(1, 41))
    _assert_equals_reference(resumed.sae.state_dict(), _reference("topk"))


def test_one_process_stopped_then_two_ranks_resume(two_ranks):
    ranks = [_result(two_ranks.job, "from_one", r) for r in (0, 1)]
    assert [r["resumed_from"] for r in ranks] == [20, 20]
    assert ranks[0]["history"]["step"] == list(range(1, 41))
    _assert_equals_reference(ranks[0]["state"], _reference("topk"))


def test_sigkilled_rank_fails_the_other_then_the_run_resumes(tmp_path):
    cfg = CFGS["topk"]
    reference = _reference("topk")
    ckpt = tmp_path / "ckpt"
    run = dataclasses.replace(RUN, checkpoint_dir=str(ckpt), checkpoint_every=5)
    slow = [_spec("topk", cfg, run, delay=0.05)]  # ~2 s for 40 steps: time to kill part-way
    job = _launch(tmp_path / "killed", {0: slow, 1: slow})
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and len(list_checkpoints(ckpt)) < 2:
            time.sleep(0.02)
        assert len(list_checkpoints(ckpt)) >= 2, "no two checkpoints appeared"
        job.procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert job.procs[1].wait(timeout=10) == -signal.SIGKILL
        code = job.procs[0].wait(timeout=TIMEOUT_S + 30)  # the collective's timeout, with slack
        print(f"\nrank 0 exited {code} {time.monotonic() - killed:.2f} s after rank 1 was SIGKILLed")
    finally:
        job.kill()
    assert code != 0, "rank 0 finished although its peer was killed part-way"
    assert not (tmp_path / "killed" / "topk-rank0.pt").exists()
    *_, previous, newest = list_checkpoints(ckpt)
    assert int(newest.name[5:14]) < cfg.total_steps
    # The newest file damaged as well: every rank must fall back to the same previous one
    # (the leader moves the damaged file aside before the others look).
    newest.write_bytes(newest.read_bytes()[:100])
    killed_at = int(previous.name[5:14])

    resumed = _launch(tmp_path / "resumed", {r: [_spec("topk", cfg, run)] for r in (0, 1)})
    assert resumed.codes(WAIT_S) == {0: 0, 1: 0}, resumed.stderr(0) + resumed.stderr(1)
    final = [_result(resumed, "topk", r) for r in (0, 1)]
    assert [f["resumed_from"] for f in final] == [killed_at, killed_at]
    _assert_equals_reference(final[0]["state"], reference)
    assert all(torch.equal(final[1]["state"][k], v) for k, v in final[0]["state"].items())


def test_ranks_with_different_configs_both_fail(tmp_path):
    cfg = CFGS["topk"]
    runs = {0: [_spec("topk", cfg)], 1: [_spec("topk", dataclasses.replace(cfg, k=3))]}
    job = _launch(tmp_path, runs)
    codes = job.codes(WAIT_S)
    for rank in (0, 1):
        assert codes[rank] != 0
        assert "Ranks disagree on the training config: ranks [1] differ from rank 0" in job.stderr(rank)


def test_join_names_a_missing_master_addr(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert join(timeout_s=5) is None  # not launched: runs alone
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set"):
        join(timeout_s=5)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused():
    # The size is checked before any collective, so no process group is needed.
    three = Replicas(ranks=(0, 1, 2), rank=0)
    cfg = CFGS["topk"]
    with pytest.raises(ValueError, match="batch_size=64 is the global batch and must split evenly over the 3 ranks"):
        fit(cfg, share_of(_source(cfg), three), RUN, three)
    with pytest.raises(ValueError, match="global batch of 64 rows does not split over 3 ranks"):
        next(share_of(_source(cfg), three)(0))


def test_a_rank_that_never_arrives_fails_the_others(tmp_path):
    timeout_s = 5.0
    job = _launch(tmp_path, {0: [_spec("topk", CFGS["topk"])]}, timeout_s=timeout_s)  # rank 1 of 2 never starts
    started = time.monotonic()
    codes = job.codes(WAIT_S)
    took = time.monotonic() - started
    print(f"\nrank 0 alone exited {codes[0]} after {took:.2f} s (timeout {timeout_s} s)")
    assert codes[0] != 0
    # The slack covers the imports (~2.5 s, more on a busy machine); an ignored timeout
    # would wait the default 600 s, and trip WAIT_S first.
    assert took < timeout_s + 45, "the rendezvous ignored the timeout"
    assert "not all arrived" in job.stderr(0), job.stderr(0)


class _Offers:
    """Stands in for two ranks' gather: returns both ranks' offers, precomputed, in rank order."""

    def __init__(self, offers: list[torch.Tensor], rank: int) -> None:
        self.offers, self.rank, self.size = offers, rank, len(offers)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        assert torch.equal(values, self.offers[self.rank])
        return torch.cat(self.offers)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batchtopk_selection_across_ranks_keeps_exactly_k_per_token_on_average(dtype):
    """With ties at the threshold (common in bfloat16) the ranks together still keep exactly
    k x global batch entries, and without ties exactly the single-process set."""
    from saelab.train.kernels.select import batch_top_indices_across, batch_top_indices_reference

    gen = torch.Generator().manual_seed(0)
    pre = torch.randn(64, 48, generator=gen).to(dtype)
    if dtype == torch.bfloat16:
        pre = (pre * 4).round() / 4  # few distinct values: many ties
    k, halves = 3, pre.chunk(2)
    offers = []
    for half in halves:
        idx = batch_top_indices_reference(half, k * 2)
        offers.append(half.reshape(-1)[idx].float())
    kept = [
        batch_top_indices_across(half, k, _Offers(offers, rank), batch_top_indices_reference)  # type: ignore[arg-type]
        for rank, half in enumerate(halves)
    ]
    assert sum(len(x) for x in kept) == k * pre.shape[0]
    if dtype == torch.float32:  # no ties: the very set one process selects
        flat = torch.cat([kept[0], kept[1] + halves[0].numel()]).sort().values
        assert torch.equal(flat, batch_top_indices_reference(pre, k).sort().values)
