"""Junk filtering and chunking: what a document must look like to be trained on, and how a
long file is cut into documents."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from saelab.corpus.config import CorpusConfig

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_LONG_RUN_RE = re.compile(r"\S{201,}")
_LEADING_BLANK_RE = re.compile(r"^(?:[ \t]*\n)+")
_LICENSE_MARKERS = (
    "permission is hereby granted",
    'provided "as is"',
    "provided ``as is''",
    "licensed under the apache license",
    "gnu general public license",
    "gnu lesser general public license",
    "redistribution and use in source and binary forms",
    "this program is free software",
    "warranties of merchantability",
    "mozilla public license",
    "all rights reserved",
    "spdx-license-identifier",
)


class DocumentFilter:
    """Drops junk documents and exact duplicates, counting why."""

    def __init__(self, cfg: CorpusConfig) -> None:
        self.cfg = cfg
        self.seen: set[bytes] = set()
        self.rejected: Counter[str] = Counter()

    def __call__(self, text: str) -> str | None:
        """The cleaned text, or None if it is junk."""
        # Keep the first line's indentation (code); drop blank lines and trailing space.
        text = _LEADING_BLANK_RE.sub("", _ANSI_RE.sub("", text).replace("\r\n", "\n")).rstrip()
        reason = junk_reason(text, self.cfg)
        if reason is None:
            digest = hashlib.blake2b(" ".join(text.split()).encode(), digest_size=16).digest()
            if digest in self.seen:
                reason = "duplicate"
            self.seen.add(digest)
        if reason is not None:
            self.rejected[reason] += 1
            return None
        return text


def junk_reason(text: str, cfg: CorpusConfig) -> str | None:
    """Why ``text`` is not worth training on (None if it is fine)."""
    if len(text) < cfg.min_doc_chars:
        return "short"
    if len(_CONTROL_RE.findall(text)) > 0.01 * len(text) or "\x00" in text:
        return "binary"
    if max(len(line) for line in text.split("\n")) > cfg.max_line_chars:
        return "long_line"
    if _LONG_RUN_RE.search(text):
        return "no_spaces"
    n_visible = len(text) - sum(map(str.isspace, text))
    if sum(map(str.isalpha, text)) < 0.4 * n_visible:
        return "not_text"
    lowered = text.lower()
    if sum(marker in lowered for marker in _LICENSE_MARKERS) >= 2:
        return "license"
    return None


_TOP_LEVEL_RE = re.compile(r"\n(?=(?:def |class |async def |@|if __name__))")


def chunk_text(text: str, max_chars: int, *, code: bool = False) -> list[str]:
    """Cut ``text`` into pieces of at most ``max_chars``: at top-level blocks (code), then
    blank lines, then lines. A single line longer than ``max_chars`` is cut hard."""
    separators = ([_TOP_LEVEL_RE] if code else []) + [re.compile(r"\n\s*\n"), re.compile(r"\n")]
    return [c for c in _split(text, max_chars, separators) if c.strip()]


def _split(text: str, max_chars: int, separators: list[re.Pattern[str]]) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    if not separators:
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    pieces = [p for p in separators[0].split(text) if p.strip()]
    joiner = "\n" if separators[0].pattern == r"\n" or separators[0] is _TOP_LEVEL_RE else "\n\n"
    out: list[str] = []
    current = ""
    for piece in pieces:
        for part in _split(piece, max_chars, separators[1:]) if len(piece) > max_chars else [piece]:
            if current and len(current) + len(joiner) + len(part) > max_chars:
                out.append(current)
                current = part
            else:
                current = f"{current}{joiner}{part}" if current else part
    if current:
        out.append(current)
    return out


def strip_license_header(source: str) -> str:
    """Drop a leading comment block that is a licence (common at the top of .py files)."""
    lines = source.split("\n")
    end = 0
    while end < len(lines) and (lines[end].startswith("#") or not lines[end].strip()):
        end += 1
    header = "\n".join(lines[:end]).lower()
    if any(marker in header for marker in _LICENSE_MARKERS):
        return "\n".join(lines[end:])
    return source
