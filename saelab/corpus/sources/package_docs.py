"""Source ``package_docs``: documentation shipped in site-packages: the long description in
each ``*.dist-info/METADATA`` (the project README), and README, ``.md``, ``.rst`` and
``.txt`` files (licences and metadata excluded)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter, chunk_text
from saelab.corpus.sources.files import package_files, read_text, shuffled, source_rng

_SKIP_DOC_NAME = re.compile(
    r"^(licen[cs]e|copying|notice|authors|record|entry_points|top_level|requires|sources|"
    r"dependency_links|namespace_packages|vendor|cmakelists|wheel|installer|requested)",
    re.IGNORECASE,
)


def _package_doc_files() -> list[str]:
    out = []
    for path in package_files():
        folder, name = os.path.split(path)
        if f"{os.sep}licenses{os.sep}" in path or _SKIP_DOC_NAME.match(name):
            continue
        in_dist_info = folder.endswith((".dist-info", ".egg-info"))
        if name == "METADATA" and in_dist_info:
            out.append(path)
        elif not in_dist_info and (name.lower().endswith((".md", ".rst", ".txt")) or name.lower().startswith("readme")):
            out.append(path)
    return out


def _metadata_description(text: str) -> str:
    """The long description (the README) that follows the header of a METADATA file."""
    _, _, body = text.partition("\n\n")
    return body


def documents(cfg: CorpusConfig, filt: DocumentFilter) -> Iterator[Document]:
    for path in shuffled(_package_doc_files(), source_rng(cfg, "package_docs")):
        if path.stat().st_size > 2_000_000:
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
