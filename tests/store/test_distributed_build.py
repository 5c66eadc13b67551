"""saelab.store.distributed: ``build_store(..., world=...)`` across real processes (gloo on CPU).

Ranks are started as ``torchrun`` starts them (RANK, WORLD_SIZE, MASTER_ADDR, ... in the
environment) and run ``_distributed_build_worker.py`` on the tiny model. Checked here:

* two ranks build the single-process store: same folder (cache key), tokens, shard layout
  and activations, each rank computing its share of the shards, and nothing left behind;
* two ranks interrupted (KeyboardInterrupt on both) resume their build into the same store;
* a rank SIGKILLed mid-build makes the other fail instead of hanging, leaves no complete
  manifest and no claim on a shard without its files, and one process then resumes the
  build (shards finished by either rank are kept) into the same store;
* a job of one rank (WORLD_SIZE=1, joined in this process) builds the store as a lone
  process does.

One 2-rank job does every 2-rank build in turn, so the processes' start-up (imports and the
model, ~10 s) is paid once, while this process loads its own model and the reference store.
Every wait has a timeout and the workers' collectives time out after ``TIMEOUT_S``, so a
failure here cannot hang the suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import saelab.store.shards as shards_mod
from saelab.distributed import join, leave
from saelab.store import ActivationStore, build_store
from saelab.store.build import store_path
from tests._ranks import Job, free_port, launch
from tests.store._helpers import HOOKS, tiny_cfg

WORKER = Path(__file__).parent / "_distributed_build_worker.py"
TIMEOUT_S = 60.0
"""The workers' collective timeout: a rank that dies or never comes makes the others raise."""
WAIT_S = 180.0
"""How long a test waits for a job (15-40 s on 2 busy cores) before it calls it hung."""
DIE_BEFORE = STOP_BEFORE = 2
"""Rank 1 of the broken build SIGKILLs itself, and both ranks of the stopped one raise
KeyboardInterrupt, right before writing their second shard."""
WORKER_THREADS = 1
"""The ranks' OMP_NUM_THREADS. A store built with as many threads as this process uses is
bit-identical to the fixture (same kernels over the same model batches); with another thread
count, CPU kernels sum in another order: measured (1 thread against 2 and 4) at most 1 fp16
ulp apart where |x| > 0.5 and 2.4e-4 below, max |diff| 0.031 on values up to 943: within
``FP16_TOL``, as hook_activations against the store in test_build.py."""
FP16_TOL = dict(rtol=2e-3, atol=2e-3)


def _launch(folder: Path, runs: list[dict[str, Any]], world_size: int = 2, die_rank: int | None = None) -> Job:
    """Start every rank of a ``world_size`` job (the worker's docstring says what a run is);
    ``die_rank`` gets each run's ``die_before``, the other ranks none."""
    jobs = {
        rank: {"timeout_s": TIMEOUT_S, "out": str(folder), "runs": [
            r if rank == die_rank else {**r, "die_before": None} for r in runs
        ]}
        for rank in range(world_size)
    }
    assert WORKER_THREADS == 1  # what tests._ranks.launch gives every rank
    return launch(WORKER, folder, jobs, world_size)


def _result(job: Job, name: str, rank: int) -> dict[str, Any]:
    return json.loads((job.folder / f"{name}-rank{rank}.json").read_text())


@dataclass
class TwoRanks:
    """The 2-rank job, finished, and the store folder of each of its runs (see ``RUNS``)."""

    job: Job
    paths: dict[str, Path]
    exits: dict[int, tuple[int, float]]
    """Each rank's exit code and exit time."""


RUNS = {
    "full": {},  # an uninterrupted build
    "stopped": {"stop_before": STOP_BEFORE},  # both ranks interrupted after one shard each ...
    "resumed": {},  # ... then resuming that build
    "broken": {"die_before": DIE_BEFORE},  # rank 1 SIGKILLed after one shard: the job ends
}
FOLDER = {"full": "full", "stopped": "twice", "resumed": "twice", "broken": "broken"}
"""Each run's cache root: the resumed run builds in the stopped one's."""


@pytest.fixture(scope="module")
def two_ranks(request, tmp_path_factory) -> TwoRanks:
    roots = {name: tmp_path_factory.mktemp(name) for name in set(FOLDER.values())}
    runs = [{"name": name, "root": str(roots[FOLDER[name]]), **spec} for name, spec in RUNS.items()]
    job = _launch(tmp_path_factory.mktemp("job"), runs, die_rank=1)
    try:  # this process loads the model and builds the reference store while the ranks start
        model, docs = request.getfixturevalue("tiny_model"), request.getfixturevalue("docs")
        request.getfixturevalue("store")
    except BaseException:
        job.kill()
        raise
    exits = job.wait(WAIT_S)
    paths = {name: store_path(model, docs, tiny_cfg(roots[FOLDER[name]])) for name in RUNS}
    return TwoRanks(job, paths, exits)


def _record_writes(monkeypatch) -> list[int]:
    """The index of every shard this process writes from now on, in order."""
    written: list[int] = []
    real_write = shards_mod.write_shard
    monkeypatch.setattr(shards_mod, "write_shard", lambda *a, **k: written.append(a[1]) or real_write(*a, **k))
    return written


def _assert_same_store(got: ActivationStore, ref: ActivationStore, exact: bool) -> None:
    """Same key, tokens, shard layout and activations at every hook: bit for bit when ``exact``."""
    assert got.path.name == ref.path.name and got.manifest["key"] == ref.manifest["key"]
    assert got.manifest["complete"] is True
    assert torch.equal(got.tokens(), ref.tokens())
    layout = [{k: s[k] for k in ("index", "seq_start", "seq_end", "n_rows", "files")} for s in ref.manifest["shards"]]
    assert [{k: s[k] for k in layout[0]} for s in got.manifest["shards"]] == layout
    for hook in HOOKS:
        acts, ref_acts = got.load(hook, "all", device="cpu"), ref.load(hook, "all", device="cpu")
        if exact:
            assert torch.equal(acts, ref_acts), hook
        else:
            torch.testing.assert_close(acts, ref_acts, **FP16_TOL)
    _assert_nothing_left_over(got.path)


def _same_threads() -> bool:
    """Whether this process computes with the ranks' thread count (then stores are bit-identical)."""
    return torch.get_num_threads() == WORKER_THREADS


def _assert_nothing_left_over(path: Path) -> None:
    assert not (path / shards_mod.RECORDS).exists()
    assert not list(path.rglob(".*.tmp-*"))


def _shares(n: int, todo: list[int] | None = None) -> list[list[int]]:
    """What each of 2 ranks computes of the shards ``todo`` (all ``n`` by default)."""
    todo = list(range(n)) if todo is None else todo
    return [todo[0::2], todo[1::2]]


def test_two_ranks_build_the_single_process_store(two_ranks, store):
    full = [_result(two_ranks.job, "full", rank) for rank in (0, 1)]
    assert all(r["error"] is None and r["path"] == str(two_ranks.paths["full"]) for r in full)
    # Shard i of the missing ones goes to rank i mod 2.
    n = len(store.manifest["shards"])
    assert n >= 4 and [r["written"] for r in full] == _shares(n)
    _assert_same_store(ActivationStore.open(two_ranks.paths["full"]), store, exact=_same_threads())


def test_two_ranks_resume_their_interrupted_build(two_ranks, store):
    job = two_ranks.job
    stopped = [_result(job, "stopped", rank) for rank in (0, 1)]
    assert all("KeyboardInterrupt" in r["error"] and r["path"] is None for r in stopped)
    assert [r["written"] for r in stopped] == [[0], [1]]
    resumed = [_result(job, "resumed", rank) for rank in (0, 1)]
    assert all(r["error"] is None and r["path"] == str(two_ranks.paths["resumed"]) for r in resumed)
    assert two_ranks.paths["resumed"] == two_ranks.paths["stopped"]
    # Between them, the ranks computed at least every shard the interrupted build lacked.
    n = len(store.manifest["shards"])
    assert {i for r in resumed for i in r["written"]} >= set(range(2, n))
    _assert_same_store(ActivationStore.open(two_ranks.paths["resumed"]), store, exact=_same_threads())


def test_two_ranks_resume_computes_only_the_missing_shards(two_ranks, store):
    n = len(store.manifest["shards"])
    resumed = [_result(two_ranks.job, "resumed", rank) for rank in (0, 1)]
    assert [r["written"] for r in resumed] == _shares(n, list(range(2, n)))


def test_dead_rank_leaves_an_incomplete_store_that_one_process_resumes(two_ranks, tiny_model, docs, store, monkeypatch):
    job, path = two_ranks.job, two_ranks.paths["broken"]
    (rc0, end0), (rc1, end1) = two_ranks.exits[0], two_ranks.exits[1]
    assert rc1 == -9  # SIGKILL, right before its second shard
    assert not (job.folder / "broken-rank1.json").exists()  # it never got to say anything
    # Rank 0 finishes its own share, then fails at the barrier instead of waiting for rank 1.
    broken = _result(job, "broken", 0)
    assert rc0 != 0 and broken["path"] is None and "barrier" in broken["error"], job.stderr(0)
    n = len(store.manifest["shards"])
    assert broken["written"] == _shares(n)[0]
    died_at = float((job.folder / "broken-rank1.died").read_text())
    print(
        f"\nrank 1 killed; rank 0's barrier raised {broken['failed_at'] - died_at:.2f} s later, "
        f"rank 0 exited {rc0} {end0 - end1:.2f} s after rank 1 (collective timeout {TIMEOUT_S} s)"
    )
    assert end0 - end1 < TIMEOUT_S  # measured 1.4-3.2 s: the dead peer is noticed, not waited for
    with pytest.raises(ValueError, match="incomplete"):
        ActivationStore.open(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["key"] == store.manifest["key"]
    # Neither the manifest nor a shard record claims a shard whose files are missing.
    records = [json.loads(f.read_text()) for f in sorted((path / shards_mod.RECORDS).glob("shard_*.json"))]
    assert sorted(r["index"] for r in records) == sorted([1, *broken["written"]])
    for entry in [*manifest["shards"], *records]:
        assert all((path / f).is_file() for f in entry["files"].values()), entry

    # One process resumes the 2-rank build: it computes the dead rank's missing shards only.
    written = _record_writes(monkeypatch)
    resumed = build_store(tiny_model, docs, tiny_cfg(path.parent), progress=False)
    assert resumed.path == path
    assert written == [i for i in range(n) if i not in {1, *broken["written"]}]
    _assert_same_store(resumed, store, exact=_same_threads())


def test_a_job_of_one_builds_as_a_lone_process(tiny_model, docs, store, tmp_path, monkeypatch):
    # In this process (no start-up to pay): torchrun's variables for a world of one.
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    written = _record_writes(monkeypatch)
    world = join(timeout_s=TIMEOUT_S)
    try:
        assert world is not None and world.world_size == 1
        one = build_store(tiny_model, docs, tiny_cfg(tmp_path), progress=False, world=world)
    finally:
        leave()
    assert written == list(range(len(store.manifest["shards"])))
    _assert_same_store(one, store, exact=True)  # built in this process, as the fixture
