"""Sources ``fortunes_en`` and ``fortunes_intl``: Debian's fortune databases (quotations,
jokes, dialogue, poems, definitions), English and other languages; the other languages are
taken round-robin so that no one language dominates."""

from __future__ import annotations

import logging
import random
import re
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter
from saelab.corpus.sources.files import read_text, shuffled, source_rng

log = logging.getLogger(__name__)

# Fortune files outside a language folder that are not English (fortunes-zh, fortunes-br).
_NON_ENGLISH_FILES = {"chinese": "zh", "tang300": "zh", "song100": "zh", "brasil": "pt"}
_LANG_DIR_RE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
# Offensive collections live in "off" folders; they are not installed by our packages anyway.
_SKIP_FORTUNE_DIRS = {"off"}


def fortune_files(roots: Sequence[str]) -> list[Path]:
    """Fortune databases (text files beside their strfile ``.dat`` index), symlinks resolved."""
    out = set()
    for root in roots:
        base = Path(root)
        if not base.is_dir():
            continue
        for top in sorted(base.glob("fortunes*")):
            for path in top.rglob("*"):
                if path.suffix in (".dat", ".u8") or _SKIP_FORTUNE_DIRS & set(path.parts):
                    continue
                if path.is_file() and path.with_name(path.name + ".dat").exists():
                    out.add(path.resolve())
    return sorted(out)


def fortune_language(path: Path) -> str:
    """ISO code of a fortune file's language: from its folder (de/, ru/, zh_CN/...) or name."""
    if path.name in _NON_ENGLISH_FILES:
        return _NON_ENGLISH_FILES[path.name]
    for part in reversed(path.parent.parts):
        if _LANG_DIR_RE.match(part):
            return part.split("_")[0]
        if part.startswith("fortunes-") and _LANG_DIR_RE.match(part.removeprefix("fortunes-")):
            return part.removeprefix("fortunes-")
        if part.startswith("fortunes"):
            break
    return "en"


def split_fortunes(text: str) -> list[str]:
    """The fortunes of a database file (separated by lines holding only %)."""
    return [f for f in re.split(r"^%\s*$", text, flags=re.MULTILINE) if f.strip()]


def documents(cfg: CorpusConfig, filt: DocumentFilter, *, english: bool) -> Iterator[Document] | None:
    name = "fortunes_en" if english else "fortunes_intl"
    files = [p for p in fortune_files(cfg.fortune_roots) if (fortune_language(p) == "en") == english]
    if not files:
        log.info("No %s fortune databases under %s; that source is skipped.", name, list(cfg.fortune_roots))
        return None
    rng = source_rng(cfg, name)
    by_lang: dict[str, list[Path]] = {}
    for path in shuffled(files, rng):
        by_lang.setdefault(fortune_language(path), []).append(path)
    return _round_robin([_fortunes_of(paths, name, filt, rng) for _, paths in sorted(by_lang.items())])


def _fortunes_of(paths: list[Path], source: str, filt: DocumentFilter, rng: random.Random) -> Iterator[Document]:
    for path in paths:
        raw = read_text(path)
        if raw is None:
            continue
        fortunes = list(enumerate(split_fortunes(raw)))
        rng.shuffle(fortunes)
        for i, fortune in fortunes:
            text = filt(fortune)
            if text is not None:
                yield Document(text, source, f"{fortune_language(path)}/{path.name}#{i}")


def _round_robin(iterators: list[Iterator[Document]]) -> Iterator[Document]:
    active = deque(iterators)
    while active:
        it = active.popleft()
        doc = next(it, None)
        if doc is not None:
            yield doc
            active.append(it)
