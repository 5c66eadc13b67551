"""The files of a store folder: the manifest and the token file, each written atomically, and
the lock that keeps two builds of one store apart."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from saelab._util.atomic import atomic_write_text
from saelab._util.keys import tensors_digest


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace ``manifest.json`` atomically (a reader sees the old or the new one, whole)."""
    atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=1))


def is_complete(path: Path) -> bool:
    """Whether the folder holds a manifest that says the build finished."""
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return False
    with contextlib.suppress(ValueError, OSError):
        return bool(json.loads(manifest.read_text()).get("complete"))
    return False


def read_tokens(path: Path, manifest: dict[str, Any]) -> Tensor | None:
    """The token ids the manifest describes, or None when the file is missing or differs."""
    file = path / manifest["tokens_file"]
    if not file.is_file():
        return None
    with safe_open(str(file), framework="pt") as handle:
        tokens = handle.get_tensor("tokens").long()
    return tokens if tokens_digest(tokens) == manifest["tokens_digest"] else None


def tokens_digest(tokens: Tensor) -> str:
    """The digest the manifest records for its token file."""
    return tensors_digest({"tokens": tokens.to(torch.int32)})


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store folder, so two processes never build one store."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, builds are still atomic per file
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
