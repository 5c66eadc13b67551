"""Source ``python_stdlib``: the standard library's ``.py`` files, licence headers stripped,
cut at top-level ``def``/``class`` blocks.

The standard library is the running Python's; nothing pins it, so :func:`stdlib_digest`
(its version and files) enters the corpus fingerprint: another Python gives another key,
never a silent change of mix.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

from saelab._util.keys import file_digest, stable_hash
from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.environment import CorpusEnvironment
from saelab.corpus.filters import DocumentFilter, chunk_text, strip_license_header
from saelab.corpus.sources.files import read_text, shuffled, source_rng, stdlib_root, walk_files

# Digests already computed in this process, keyed on every file's path, size and mtime.
_DIGESTS: dict[str, str] = {}


def _stdlib_files(root: Path) -> list[str]:
    skip = frozenset({"site-packages", "dist-packages", "__pycache__"})
    return sorted(p for p in walk_files(root, skip) if p.endswith(".py"))


def stdlib_digest(env: CorpusEnvironment) -> str:
    """The Python version and a digest of the standard-library files this source reads
    (cached per process while no file's size or mtime changes)."""
    root = stdlib_root(env)
    files = _stdlib_files(root)
    stats = [(os.path.relpath(p, root), st.st_size, st.st_mtime_ns) for p in files for st in [os.stat(p)]]
    key = stable_hash([str(root), stats])
    if key not in _DIGESTS:
        contents = [(rel, file_digest(Path(p))) for (rel, _, _), p in zip(stats, files, strict=True)]
        _DIGESTS[key] = stable_hash(contents)
    return f"{platform.python_implementation()} {platform.python_version()}: {_DIGESTS[key]}"


def documents(cfg: CorpusConfig, filt: DocumentFilter, env: CorpusEnvironment) -> Iterator[Document]:
    root = stdlib_root(env)
    for path in shuffled(_stdlib_files(root), source_rng(cfg, "python_stdlib")):
        source = read_text(path)
        if source is None:
            continue
        for i, chunk in enumerate(chunk_text(strip_license_header(source), cfg.max_doc_chars, code=True)):
            text = filt(chunk)
            if text is not None:
                yield Document(text, "python_stdlib", f"{path.relative_to(root)}#{i}")
