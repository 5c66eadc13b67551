"""Sources ``fortunes_en`` and ``fortunes_intl``: the fortune databases (quotations, jokes,
dialogue, poems, definitions) of the declared Debian packages (``CorpusConfig.fortune_packages``),
English and other languages; the other languages are taken round-robin so that no one
language dominates."""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.environment import CorpusEnvironment, CorpusSourceError, debian_package_files
from saelab.corpus.filters import DocumentFilter
from saelab.corpus.sources.files import read_text, shuffled, source_rng

# Fortune files outside a language folder that are not English (fortunes-zh, fortunes-br).
_NON_ENGLISH_FILES = {"chinese": "zh", "tang300": "zh", "song100": "zh", "brasil": "pt"}
_LANG_DIR_RE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
# Offensive collections live in "off" folders; they are not installed by our packages anyway.
_SKIP_FORTUNE_DIRS = {"off"}


def fortune_files(paths: Iterable[Path]) -> list[Path]:
    """The fortune databases among a package's installed paths: files under a
    ``games/fortunes*`` folder other than the strfile indexes (``.dat``) and the ``.u8``
    links, symlinks resolved. Databases that debconf left unindexed count too, so a debconf
    answer does not change the mix."""
    out = set()
    for path in paths:
        parts = path.parts
        in_fortunes = any(a == "games" and b.startswith("fortunes") for a, b in zip(parts, parts[1:], strict=False))
        if not in_fortunes or path.suffix in (".dat", ".u8") or _SKIP_FORTUNE_DIRS & set(parts):
            continue
        if path.is_file():
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


def documents(cfg: CorpusConfig, filt: DocumentFilter, env: CorpusEnvironment, *, english: bool) -> Iterator[Document]:
    name = "fortunes_en" if english else "fortunes_intl"
    installed = fortune_files(debian_package_files(cfg.fortune_packages, env))
    files = [p for p in installed if (fortune_language(p) == "en") == english]
    if not files:
        raise CorpusSourceError(
            f"The declared fortune packages {[p for p, _ in cfg.fortune_packages]} hold no "
            f"{'English' if english else 'other-language'} databases, which {name} reads. Declare a package that "
            f"has some in CorpusConfig.fortune_packages, or give {name} no share in CorpusConfig.fractions."
        )
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
