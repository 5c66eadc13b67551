"""Source ``package_docs``: documentation shipped with the declared packages
(``CorpusConfig.packages``): the long description in each ``*.dist-info/METADATA`` (the
project README), and README, ``.md``, ``.rst`` and ``.txt`` files (licences and metadata
excluded)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.environment import CorpusEnvironment, distribution_files
from saelab.corpus.filters import DocumentFilter, chunk_text
from saelab.corpus.sources.files import read_text, shuffled_files, source_rng

_SKIP_DOC_NAME = re.compile(
    r"^(licen[cs]e|copying|notice|authors|record|entry_points|top_level|requires|sources|"
    r"dependency_links|namespace_packages|vendor|cmakelists|wheel|installer|requested)",
    re.IGNORECASE,
)


def is_doc_file(key: str) -> bool:
    """Whether a distribution's file (its ``RECORD`` path) is documentation this source reads."""
    folder, name = posixpath.split(key)
    if "/licenses/" in f"/{key}" or _SKIP_DOC_NAME.match(name) or "__pycache__" in key:
        return False
    if folder.endswith((".dist-info", ".egg-info")):
        return name == "METADATA"
    return name.lower().endswith((".md", ".rst", ".txt")) or name.lower().startswith("readme")


def _metadata_description(text: str) -> str:
    """The long description (the README) that follows the header of a METADATA file."""
    _, _, body = text.partition("\n\n")
    return body


def documents(cfg: CorpusConfig, filt: DocumentFilter, env: CorpusEnvironment) -> Iterator[Document]:
    files = {key: path for key, path in distribution_files(cfg.packages, env).items() if is_doc_file(key)}
    return _documents(cfg, filt, shuffled_files(files, source_rng(cfg, "package_docs")))


def _documents(cfg: CorpusConfig, filt: DocumentFilter, paths: list[Path]) -> Iterator[Document]:
    # A generator of its own, so that documents() checks the declared packages when called.
    for path in paths:
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        raw = read_text(path)
        if raw is None:
            continue
        text = _metadata_description(raw) if path.name == "METADATA" else raw
        ref = path.parent.name if path.name == "METADATA" else path.name
        for i, chunk in enumerate(chunk_text(text, cfg.max_doc_chars)):
            cleaned = filt(chunk)
            if cleaned is not None:
                yield Document(cleaned, "package_docs", f"{ref}#{i}")
