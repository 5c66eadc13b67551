"""Subprocess body of the distributed training tests: one rank of a torch.distributed job.

usage: python tests/train/_distributed_worker.py JOB_FILE

JOB_FILE is JSON: ``{"timeout_s": float, "out": folder, "runs": [run, ...]}``, each run
``{"name": str, "cfg": TrainConfig.to_dict(), "run": RunConfig.to_dict(), "delay": seconds
per batch, "seed": data seed}``, or a sweep: ``"sweep": [TrainConfig.to_dict(), ...]`` in place
of ``"cfg"`` (one ``<name>-<member>-rank<R>.pt`` per member). The rank joins the job the test launched it into (RANK,
WORLD_SIZE, ... in the environment), trains every run in turn as one replica of a single
group on its share of a synthetic global batch, and saves ``<out>/<name>-rank<R>.pt``: the
final state_dict, the history and where it resumed from. Every rank saves, so the test can
check that the replicas ended bit-identical.
"""

import json
import sys
import time
from pathlib import Path

import torch

from saelab.distributed import join, leave, split_world
from saelab.train import TrainConfig
from saelab.train.replicated import share_of
from saelab.train.sweep import fit_sweep
from saelab.train.trainer import RunConfig, fit
from tests._synthetic import synthetic_source


def slowed(source, delay: float):
    """``source`` with a pause before each batch, so the test can kill a rank part-way."""

    def slow(start):
        for batch in source(start):
            time.sleep(delay)
            yield batch

    return slow


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    world = join(timeout_s=job["timeout_s"])
    assert world is not None, "launch with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set"
    _, replicas = split_world(world, 1)
    try:
        for spec in job["runs"]:
            if "sweep" in spec:
                _sweep(spec, job["out"], replicas, world.rank)
                continue
            cfg = TrainConfig.from_dict(spec["cfg"])
            source = synthetic_source(cfg.d_in, cfg.batch_size, seed=spec["seed"])
            if spec.get("delay"):
                source = slowed(source, spec["delay"])
            result = fit(cfg, share_of(source, replicas), RunConfig.from_dict(spec["run"]), replicas)
            out = Path(job["out"]) / f"{spec['name']}-rank{world.rank}.pt"
            torch.save(
                {
                    "state": result.sae.state_dict(),
                    "history": result.history.to_dict(orient="list"),
                    "resumed_from": result.resumed_from,
                    "steps_done": result.steps_done,
                },
                out,
            )
    except BaseException:
        leave(finished=False)
        raise
    leave()


def _sweep(spec, out: str, replicas, rank: int) -> None:
    """A sweep run: ``spec["sweep"]`` lists the members' configs; one file per member."""
    configs = [TrainConfig.from_dict(c) for c in spec["sweep"]]
    source = synthetic_source(configs[0].d_in, configs[0].batch_size, seed=spec["seed"])
    result = fit_sweep(configs, share_of(source, replicas), RunConfig.from_dict(spec["run"]), replicas)
    for i, member in enumerate(result.results):
        torch.save({"state": member.sae.state_dict()}, Path(out) / f"{spec['name']}-{i}-rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
