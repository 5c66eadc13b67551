"""JSON-lines files that a long run appends to one finished item at a time and resumes from.

Each record is written with one ``write`` of a whole line, flushed and fsynced, so an
interrupted run leaves at most a partial last line; loading drops such a line (and says
so) and the next run redoes that item. Nothing already written is ever rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of ``path`` (none when it does not exist)."""
    if not path.is_file():
        return []
    out, broken = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                broken += 1
    if broken:
        log.warning("%s: dropped %d incomplete line(s) left by an interrupted run; they will be redone.", path, broken)
        _rewrite(path, out)
    return out


def append_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Drop the broken tail so later appends start on a fresh line (atomic replace)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
