"""Atomic, safe-to-load training checkpoints: SAE, optimizer, data position and RNG state in one file.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over its final name. ``os.replace`` is atomic on POSIX, so a run killed at any
moment (even SIGKILL) leaves either the previous checkpoints or a complete new one. Stray
``*.tmp`` files from a killed write are ignored and cleaned up.

Loading unpickles nothing but tensors and plain types (``torch.load(weights_only=True)``),
so a checkpoint from someone else cannot run code; the RNG states are stored as tensors and
lists for that reason. A file damaged after the fact (a truncated copy, a full disk) is
caught when it is loaded: :func:`load_latest` warns, moves it aside as ``*.corrupt`` and
falls back to the newest checkpoint that loads.
"""

from __future__ import annotations

import logging
import os
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saelab._util.atomic import atomic_torch_save

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
    """Every RNG a training step can touch, so a resumed run draws the same numbers, as
    tensors and plain types only (see the module docstring)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # MT19937's uint32 words
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the RNG states :func:`capture_rng` took. They may have been loaded onto a GPU
    (``map_location``), but torch's setters take CPU byte tensors only."""
    torch.set_rng_state(state["torch"].cpu())
    numpy = state["numpy"]
    keys = numpy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:09d}.pt"


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``state`` atomically as the checkpoint for ``step``; keep the newest ``keep``.

    ``state`` must hold only what ``torch.load(weights_only=True)`` reads back: tensors,
    numbers, strings, None, and lists, tuples and dicts of them.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    atomic_torch_save(final, {"step": step, **state})
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first (temporary and corrupt files never match)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """One checkpoint file, loaded safely and checked against its name.

    Raises whatever ``torch.load`` raises for a damaged or unsafe file, and ``ValueError``
    when its contents do not match its name.
    """
    path = Path(path)
    state = torch.load(path, map_location=map_location, weights_only=True)
    match = _NAME.match(path.name)
    if not isinstance(state, dict) or match is None or state.get("step") != int(match.group(1)):
        raise ValueError(f"{path} does not hold the checkpoint of the step its name says")
    return Checkpoint(step=int(state.pop("step")), path=path, state=state)


def load_latest(folder: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint | None:
    """The newest checkpoint that loads, or None when none does.

    A newer one that fails to load is moved aside as ``<name>.corrupt``, with a warning, so
    that pruning never keeps it in place of good ones.
    """
    folder = Path(folder)
    for stray in folder.glob("*.tmp") if folder.is_dir() else []:
        log.info("Removing %s, left by an interrupted checkpoint write", stray)
        stray.unlink(missing_ok=True)
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, map_location)
        except Exception as err:  # any failure to load means: do not trust it
            aside = path.with_name(path.name + ".corrupt")
            message = f"Checkpoint {path} does not load ({type(err).__name__}: {err}); moved to {aside.name}"
            log.warning("%s, trying the previous one", message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            os.replace(path, aside)
    return None
