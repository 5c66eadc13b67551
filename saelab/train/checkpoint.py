"""Atomic training checkpoints: SAE, optimizer, data position and RNG state in one file.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over its final name. ``os.replace`` is atomic on POSIX, so a run killed at any
moment (even SIGKILL) leaves either the previous checkpoints or a complete new one, never a
half-written file that a resume would trust. Stray ``*.tmp`` files from a killed write are
ignored and cleaned up.
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saelab.atomic import fsync_path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint."""

    step: int
    """Optimizer steps completed when it was written."""
    path: Path
    state: dict[str, Any]
    """Whatever the trainer stored: model/optimizer state dicts, data position, config, ..."""


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step can touch, so a resumed run draws the same numbers."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:09d}.pt"


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``state`` atomically as the checkpoint for ``step``; keep the newest ``keep``."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"step": step, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        fsync_path(folder)  # make the rename itself durable
    finally:
        tmp.unlink(missing_ok=True)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (temporary files never match)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_latest(folder: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint | None:
    """The newest complete checkpoint, or None when there is none."""
    for stray in Path(folder).glob("*.tmp") if Path(folder).is_dir() else []:
        log.info("Removing %s, left by an interrupted checkpoint write", stray)
        stray.unlink(missing_ok=True)
    paths = list_checkpoints(folder)
    if not paths:
        return None
    path = paths[-1]
    state = torch.load(path, map_location=map_location, weights_only=False)
    return Checkpoint(step=int(state.pop("step")), path=path, state=state)
