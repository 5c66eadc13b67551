"""Where saelab keeps things: the repo's data folder and the on-disk cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The folder with the labelled texts and the bundled SAE suite (overridable by SAELAB_DATA)."""
    return Path(os.environ.get("SAELAB_DATA", REPO_ROOT / "data"))


def cache_dir() -> Path:
    """Converted model weights and other regenerable artefacts (SAELAB_CACHE, default ~/.cache/saelab)."""
    root = os.environ.get("SAELAB_CACHE") or Path.home() / ".cache" / "saelab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
