"""Atomic writes: a reader (or a resumed run) never sees half a file or half a folder.

Everything is written under a temporary name in the destination's folder, flushed to disk,
then renamed into place; ``os.replace`` is atomic on POSIX.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (so a rename inside it is durable), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    """Write a safetensors file under a temporary name, flush it to disk, then rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp))
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(path: Path, obj: object) -> None:
    """``torch.save`` under ``<name>.<pid>.tmp`` (a name no checkpoint or snapshot pattern
    matches), flushed to disk, renamed into place, and the rename itself made durable."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text under a temporary name, flush it to disk, then rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes under a temporary name, flush them to disk, then rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dir_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Create the folder ``path`` by calling ``write(tmp)`` on a sibling temporary folder,
    fsyncing it, then renaming it into place (replacing any previous folder).

    rename(2) cannot replace a non-empty directory, so an old folder is first renamed
    aside, and deleted once the new one is in place: at every moment ``path`` is either
    the complete old folder, missing (only between the two renames), or the complete new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        for file in tmp.iterdir():
            fsync_path(file)
        fsync_path(tmp)
        old = None
        if path.exists():
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a folder; refusing to replace it")
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path
