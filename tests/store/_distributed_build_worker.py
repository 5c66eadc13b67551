"""Subprocess body of the distributed store-build tests: one rank of a torch.distributed job.

usage: python tests/store/_distributed_build_worker.py JOB_FILE

JOB_FILE is JSON: ``{"timeout_s": float, "out": folder, "runs": [run, ...]}``, each run
``{"name": str, "root": folder, "stop_before": n or null, "die_before": n or null}``. The
rank joins the job the test launched it into (RANK, WORLD_SIZE, ... in the environment),
builds the tiny model (tests/_tiny_model.py) and loads the store tests' documents, and builds the ``tiny_cfg(root)``
store of each run in turn with ``build_store(..., world=world)``. Counting this rank's
shard writes from 1, it raises KeyboardInterrupt right before the ``stop_before``-th (an
interruption: the rank goes on with the next run, so give it to every rank or none), and
SIGKILLs itself right before the ``die_before``-th (a crash).

For each run it writes ``<out>/<name>-rank<R>.json``: the shard indices this rank wrote,
the store's path, and the error that ended the run, if any, with its time (an error other
than the interruption ends the process, non-zero); a rank that kills itself leaves the time
it died in ``<out>/<name>-rank<R>.died``.
"""

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))  # `tests.store._helpers`, from this checkout

import saelab  # noqa: E402
import saelab.store.shards as shards_mod  # noqa: E402
from saelab.distributed import join, leave  # noqa: E402
from saelab.store import build_store  # noqa: E402
from tests._tiny_model import build_tiny_model  # noqa: E402
from tests.store._helpers import tiny_cfg  # noqa: E402

REAL_WRITE = shards_mod.write_shard


def recording_writes(written: list[int], run: dict, died: Path):
    """``write_shard`` that records each shard index, and stops or kills this rank as ``run`` says."""

    def write(*args, **kwargs):
        nth = len(written) + 1
        if nth == run.get("stop_before"):
            raise KeyboardInterrupt("simulated interruption")
        if nth == run.get("die_before"):
            died.write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        written.append(args[1])
        return REAL_WRITE(*args, **kwargs)

    return write


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    world = join(timeout_s=job["timeout_s"])
    assert world is not None, "launch with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set"
    model = build_tiny_model()
    docs = saelab.load_dataset()["text"].tolist()[::3]  # as tests/store/conftest.py
    interrupted = False  # a rank stopped part-way leaves without waiting for the others
    try:
        for run in job["runs"]:
            written: list[int] = []
            out = Path(job["out"]) / f"{run['name']}-rank{world.rank}.json"
            shards_mod.write_shard = recording_writes(written, run, out.with_suffix(".died"))
            result = {"written": written, "path": None, "error": None, "failed_at": None}
            try:
                store = build_store(model, docs, tiny_cfg(run["root"]), progress=False, world=world)
                result["path"] = str(store.path)
            except KeyboardInterrupt:
                result["error"], result["failed_at"] = traceback.format_exc(), time.time()
                interrupted = True
            except BaseException:
                result["error"], result["failed_at"] = traceback.format_exc(), time.time()
                raise
            finally:
                out.write_text(json.dumps(result))
    except BaseException:
        leave(finished=False)
        raise
    leave(finished=not interrupted)


if __name__ == "__main__":
    main(sys.argv[1])
