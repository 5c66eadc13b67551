"""Source ``python_stdlib``: the standard library's ``.py`` files, licence headers stripped,
cut at top-level ``def``/``class`` blocks."""

from __future__ import annotations

from collections.abc import Iterator

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter, chunk_text, strip_license_header
from saelab.corpus.sources.files import read_text, shuffled, source_rng, stdlib_root, walk_files


def _stdlib_files() -> list[str]:
    skip = frozenset({"site-packages", "dist-packages", "__pycache__"})
    return [p for p in walk_files(stdlib_root(), skip) if p.endswith(".py")]


def documents(cfg: CorpusConfig, filt: DocumentFilter) -> Iterator[Document]:
    root = stdlib_root()
    for path in shuffled(_stdlib_files(), source_rng(cfg, "python_stdlib")):
        source = read_text(path)
        if source is None:
            continue
        for i, chunk in enumerate(chunk_text(strip_license_header(source), cfg.max_doc_chars, code=True)):
            text = filt(chunk)
            if text is not None:
                yield Document(text, "python_stdlib", f"{path.relative_to(root)}#{i}")
