"""What every offline source shares: seeded orders and reading files."""

from __future__ import annotations

import os
import random
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from saelab.corpus.config import CorpusConfig
from saelab.corpus.environment import CorpusEnvironment


def source_rng(cfg: CorpusConfig, name: str) -> random.Random:
    """An independent, seeded random stream for one source."""
    # A string seed is hashed with SHA-512, so every source gets an independent stream.
    return random.Random(f"{cfg.seed}:{name}")


def shuffled(paths: Iterable[str | Path], rng: random.Random) -> list[Path]:
    """Distinct paths in a seeded random order (sorted first, so the order does not depend on the file system)."""
    out = sorted({str(p) for p in paths})
    rng.shuffle(out)
    return [Path(p) for p in out]


def shuffled_files(files: dict[str, Path], rng: random.Random) -> list[Path]:
    """The paths of ``files`` (key -> path) in a seeded random order of their keys, so the
    order does not depend on where the files are installed."""
    return [files[str(key)] for key in shuffled(files, rng)]


def stdlib_root(env: CorpusEnvironment) -> Path:
    """The Python standard library's folder."""
    return Path(env.stdlib_dir or sysconfig.get_paths()["stdlib"])


def walk_files(root: Path, skip_dirs: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every file under ``root`` as a string (os.walk and strings: ~5x faster than rglob)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs)
        for name in files:
            yield os.path.join(folder, name)


def read_text(path: Path) -> str | None:
    """A file as UTF-8 text, or None when it is not readable text."""
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
