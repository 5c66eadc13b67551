"""Joining the torch.distributed job that ``torchrun`` launched, with clear errors, not hangs.

``torchrun --nproc_per_node=N -m saelab.train ...`` starts N copies of the command and tells
each who it is through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). :func:`join` reads them and joins the process group:
NCCL when the process has a GPU, gloo otherwise. A process started without them is not part
of a job, and :func:`join` returns None, so the same code runs alone or distributed.

Every collective has a timeout (``timeout_s``, set on the process group): a rank that dies
or never arrives makes the others raise instead of waiting forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 600.0
"""Seconds a collective waits for the other ranks before it raises (the store build's
longest wait is one shard's forward passes on the slowest rank)."""

LAUNCH_HINT = "launch with `torchrun --nproc_per_node=N -m saelab.train ...`, which sets them"
_REQUIRED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_joined_timeout: dict[str, float] = {}  # the timeout the process group was created with


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int
    """Global rank, 0 ... world_size - 1."""
    world_size: int
    local_rank: int
    """Rank on this machine: which GPU it uses."""
    backend: str
    timeout_s: float

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes manifests, checkpoints and results."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """The GPU of this rank under NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every rank (raises after ``timeout_s``)."""
        dist.barrier(device_ids=[self.local_rank] if self.backend == "nccl" else None)


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process as a rank of a job."""
    return "WORLD_SIZE" in os.environ or "RANK" in os.environ


def join(timeout_s: float = DEFAULT_TIMEOUT_S, backend: str | None = None) -> World | None:
    """Join the job this process belongs to, or return None when it was started alone.

    Joining twice returns the same world. Raises ``RuntimeError`` naming the missing
    variable when the launch is incomplete (a ``RANK`` without ``MASTER_ADDR``, say), which
    would otherwise fail deep inside the rendezvous or wait for a master that never comes.
    """
    if not launched():
        return None
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    env = _read_env()
    if dist.is_initialized():  # the group keeps the timeout it was created with
        return _current(env, _joined_timeout.get("timeout_s", timeout_s))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        if env["LOCAL_RANK"] >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={env['LOCAL_RANK']} but this machine has {torch.cuda.device_count()} GPU(s); "
                "give torchrun --nproc_per_node at most the number of GPUs."
            )
        torch.cuda.set_device(env["LOCAL_RANK"])
    try:
        dist.init_process_group(
            backend, rank=env["RANK"], world_size=env["WORLD_SIZE"], timeout=timedelta(seconds=timeout_s)
        )
    except dist.DistStoreError as err:
        raise RuntimeError(
            f"Rank {env['RANK']} of {env['WORLD_SIZE']} waited {timeout_s:g} s for the other ranks at "
            f"{os.environ['MASTER_ADDR']}:{env['MASTER_PORT']} and not all arrived; start every rank (on every "
            f"machine, with the same --rdzv-endpoint or MASTER_ADDR/MASTER_PORT), or raise the timeout. ({err})"
        ) from err
    _joined_timeout["timeout_s"] = timeout_s
    return _current(env, timeout_s)


def leave(*, finished: bool = True) -> None:
    """Leave the process group (at the end of a command; harmless when not joined).

    After a finished run every rank first meets the others at a barrier, so that none tears
    the group down while another is still in its last exchange: under gloo that makes the late
    rank abort at exit ("terminate called without an active exception"), and a job that did
    all its work would still be reported failed. After an error (``finished=False``) no rank
    waits: the others may be inside a collective that a barrier would wrongly meet.
    """
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def _read_env() -> dict[str, int]:
    missing = [name for name in _REQUIRED if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"This process looks like a rank of a distributed job (RANK or WORLD_SIZE is set) but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; {LAUNCH_HINT}."
        )
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        raw = os.environ.get(name, "0" if name == "LOCAL_RANK" else "")
        try:
            values[name] = int(raw)
        except ValueError:
            raise RuntimeError(f"{name}={raw!r} is not an integer; {LAUNCH_HINT}.") from None
    if not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise RuntimeError(f"RANK={values['RANK']} is outside WORLD_SIZE={values['WORLD_SIZE']}; {LAUNCH_HINT}.")
    return values


def _current(env: dict[str, int], timeout_s: float) -> World:
    return World(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=env["LOCAL_RANK"],
        backend=str(dist.get_backend()),
        timeout_s=timeout_s,
    )
