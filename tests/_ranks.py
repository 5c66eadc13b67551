"""Starting the ranks of a torch.distributed job as ``torchrun`` starts them, for the tests.

Each rank is a fresh ``python WORKER JOB_FILE`` process with RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT in its environment, one thread, this checkout on its path, and
its stderr in ``<folder>/rank<R>.err``. Every wait has a timeout and kills the ranks when it
runs out, so a hung job cannot hang the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Job:
    """The ranks of one launch and their output folder."""

    procs: dict[int, subprocess.Popen]
    folder: Path

    def wait(self, timeout: float) -> dict[int, tuple[int, float]]:
        """Every rank's exit code and exit time (``time.monotonic``, polled every 50 ms);
        kills them all and raises TimeoutExpired if one hangs."""
        deadline, ended = time.monotonic() + timeout, {}
        try:
            while len(ended) < len(self.procs):
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired("distributed job", timeout)
                for rank, proc in self.procs.items():
                    if rank not in ended and proc.poll() is not None:
                        ended[rank] = (proc.returncode, time.monotonic())
                time.sleep(0.05)
            return ended
        finally:
            self.kill()

    def codes(self, timeout: float) -> dict[int, int]:
        """Every rank's exit code (see :meth:`wait`)."""
        return {rank: code for rank, (code, _) in self.wait(timeout).items()}

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def stderr(self, rank: int) -> str:
        return (self.folder / f"rank{rank}.err").read_text()


def launch(worker: Path, folder: Path, jobs: dict[int, dict[str, Any]], world_size: int = 2) -> Job:
    """Start rank ``r`` of a ``world_size`` job on ``jobs[r]`` (written to a JSON file the
    worker reads) for every rank in ``jobs``: all of the world, or fewer."""
    folder.mkdir(parents=True, exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    common = dict(
        os.environ, WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
        OMP_NUM_THREADS="1", PYTHONPATH=pythonpath,
    )
    procs = {}
    for rank, job in jobs.items():
        job_file = folder / f"rank{rank}.json"
        job_file.write_text(json.dumps(job))
        env = dict(common, RANK=str(rank), LOCAL_RANK=str(rank))
        with open(folder / f"rank{rank}.err", "w") as err:
            procs[rank] = subprocess.Popen(
                [sys.executable, str(worker), str(job_file)], env=env, stdout=subprocess.DEVNULL, stderr=err
            )
    return Job(procs, folder)
