"""Text corpora for building activation stores: a local offline mix, or a streamed HF dataset.

The offline mix
---------------
Built from what a fresh machine already has, with no network. Each source gets a share of
``CorpusConfig.target_tokens`` (model tokens, counted with the tokenizer when one is given):

===================  =======  ====================================================================
source               share    what it is
===================  =======  ====================================================================
``python_stdlib``    0.30     Python standard-library ``.py`` files (``sysconfig`` ``stdlib``),
                              licence headers stripped, cut at top-level ``def``/``class`` blocks.
``docstrings``       0.15     module/class/function docstrings of the installed packages'
                              ``.py`` files (technical English prose, maths, examples).
``package_docs``     0.15     documentation shipped in site-packages: the long description in
                              each ``*.dist-info/METADATA`` (the project README), and README,
                              ``.md``, ``.rst``, ``.txt`` files (licences and metadata excluded).
``fortunes_en``      0.20     Debian ``fortunes`` / ``fortunes-min`` databases: quotations, jokes,
                              dialogue, poems, definitions; everyday English.
``fortunes_intl``    0.15     the other-language fortune packages (de, es, it, ru, pt, zh, ...),
                              taken round-robin across languages so no one language dominates.
``labelled``         0.01     a seeded, per-category ``labelled_fraction`` of
                              :func:`saelab.load_dataset`. The ids used are in
                              ``CorpusMix.labelled_ids``; the rest are never trained on.
``model_samples``    0.04     only when ``model_samples > 0``: continuations the model itself
                              writes from prompts for registers the other sources lack
                              (chat, social media, formal letters, e-mail, reviews); see
                              :func:`sample_model_texts`.
===================  =======  ====================================================================

Shares are renormalised over the sources that are available (no fortunes installed, no model
samples asked for). A source that runs dry gives its unused budget to the others in
proportion to their shares, so the mix reaches the target whenever the sources together can.
Within a source the order is a seeded shuffle of files (then of the documents in them), and
the final document order is a seeded shuffle across sources, so any prefix of the mix (an
activation store takes one) is balanced too. Everything is deterministic given ``seed`` and
the files installed; :func:`corpus_fingerprint` summarises the latter for cache keys.

Documents are cut at ``max_doc_chars`` (on block, paragraph, then line boundaries), and junk
is dropped: binary or undecodable files, minified or data files (very long lines or runs
without whitespace, few letters), licence boilerplate, terminal escape codes, and exact
duplicates (the same licence or fortune shipped twice). ``CorpusMix.rejected`` counts why.

Measured with SmolLM2's tokenizer on the development machine (Python 3.11, the saelab venv,
the fortune packages listed in the README), the sources hold about 28M tokens after
filtering: stdlib 8.8M, docstrings 14M, package docs 0.54M, fortunes 0.67M English and
4.1M in other languages (de, es, it, ru, pt, zh, ...), labelled 0.02M. The default 3M-token
target is met with every source at its nominal share; from about 3.3M tokens on, the
English fortunes run dry and pass their budget on.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import logging
import os
import random
import re
import sys
import sysconfig
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens import HookedTransformer

log = logging.getLogger(__name__)

CorpusSource = Literal["offline", "hf"]
CORPUS_SOURCES: tuple[str, ...] = ("offline", "hf")

SOURCES: tuple[str, ...] = (
    "python_stdlib",
    "docstrings",
    "package_docs",
    "fortunes_en",
    "fortunes_intl",
    "labelled",
    "model_samples",
)
"""Names of the offline mix's ingredients, in reporting order."""

DEFAULT_FRACTIONS: dict[str, float] = {
    "python_stdlib": 0.30,
    "docstrings": 0.15,
    "package_docs": 0.15,
    "fortunes_en": 0.20,
    "fortunes_intl": 0.15,
    "labelled": 0.01,
    "model_samples": 0.04,
}

DEFAULT_FORTUNE_ROOTS: tuple[str, ...] = ("/usr/share/games",)

# Bump when the mixing recipe changes, so stores built from an older mix are not reused.
MIX_VERSION = 1


@dataclass(frozen=True)
class CorpusConfig:
    """Where training text comes from and how much of it to take."""

    source: CorpusSource = "offline"
    """``offline``: the local mix described in the module docstring (no network).
    ``hf``: stream ``hf_dataset`` with the ``datasets`` package (online only)."""
    target_tokens: int = 3_000_000
    """How many model tokens the corpus should hold (an upper bound: an activation store
    takes the prefix it needs)."""
    seed: int = 0
    """Seeds every shuffle and sample; the same seed gives the same documents in the same order."""
    fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    """offline: share of ``target_tokens`` per source (renormalised over available sources)."""
    min_doc_chars: int = 20
    """Documents shorter than this are dropped (a one-line fortune is ~40 characters)."""
    max_doc_chars: int = 4000
    """Longer files are cut into documents of at most this many characters (~1000 tokens)."""
    max_line_chars: int = 1000
    """A document with a longer line is dropped as minified code or data."""
    labelled_fraction: float = 0.5
    """Share of the labelled dataset (per category, seeded) mixed in; the rest stays unseen."""
    model_samples: int = 0
    """Number of model-written texts to add (0 = none). Needs the model; cached on disk."""
    sample_max_new_tokens: int = 128
    """Length of each model-written continuation."""
    fortune_roots: tuple[str, ...] = DEFAULT_FORTUNE_ROOTS
    """Folders searched for ``fortunes*`` databases (Debian installs them in /usr/share/games)."""
    hf_dataset: str = "monology/pile-uncopyrighted"
    """hf: dataset name on the Hugging Face hub."""
    hf_config: str | None = None
    """hf: dataset configuration name, if it has several."""
    hf_split: str = "train"
    """hf: split to stream."""
    hf_text_field: str = "text"
    """hf: column that holds the text."""
    hf_shuffle_buffer: int = 10_000
    """hf: size of the streaming shuffle buffer (0 = keep the dataset's order)."""

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; accept that so from_json(to_json()) round-trips.
        object.__setattr__(self, "fortune_roots", tuple(str(p) for p in self.fortune_roots))
        object.__setattr__(self, "fractions", {k: float(v) for k, v in self.fractions.items()})
        problems = _config_problems(self)
        if problems:
            raise ValueError("Invalid CorpusConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fortune_roots"] = list(self.fortune_roots)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorpusConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"Unknown CorpusConfig field(s) {unknown}. Valid fields: {sorted(valid)}")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CorpusConfig:
        return cls.from_dict(json.loads(text))


def _config_problems(cfg: CorpusConfig) -> list[str]:
    out = []
    if cfg.source not in CORPUS_SOURCES:
        out.append(f"source must be one of {list(CORPUS_SOURCES)}, got {cfg.source!r}")
    unknown = sorted(set(cfg.fractions) - set(SOURCES))
    if unknown:
        out.append(f"fractions has unknown sources {unknown}; valid: {list(SOURCES)}")
    if any(v < 0 for v in cfg.fractions.values()) or sum(cfg.fractions.values()) <= 0:
        out.append(f"fractions must be >= 0 with a positive sum, got {cfg.fractions}")
    for name in ("target_tokens", "min_doc_chars", "max_doc_chars", "max_line_chars", "sample_max_new_tokens"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            out.append(f"{name} must be a positive integer, got {getattr(cfg, name)!r}")
    if not out and cfg.min_doc_chars > cfg.max_doc_chars:
        out.append(f"min_doc_chars ({cfg.min_doc_chars}) exceeds max_doc_chars ({cfg.max_doc_chars})")
    if not 0.0 <= cfg.labelled_fraction <= 1.0:
        out.append(f"labelled_fraction must be in [0, 1], got {cfg.labelled_fraction}")
    if not isinstance(cfg.model_samples, int) or cfg.model_samples < 0:
        out.append(f"model_samples must be an integer >= 0, got {cfg.model_samples!r}")
    return out


class Document(NamedTuple):
    """One document of a corpus and where it came from."""

    text: str
    source: str
    """One of :data:`SOURCES` (or ``"hf"``, or ``"docs"`` for caller-given texts)."""
    ref: str
    """Origin within the source: a file path (and chunk), a labelled id, a prompt index."""


@dataclass(frozen=True)
class CorpusMix:
    """A materialised offline mix: documents in training order, plus what is in it."""

    documents: list[Document]
    tokens: list[int]
    """Token count of each document (exact with a tokenizer, else an estimate)."""
    budgets: dict[str, int]
    """Token budget each available source was given before redistribution."""
    rejected: dict[str, int]
    """Documents dropped, by reason (short, binary, long_line, no_spaces, not_text, license, duplicate)."""
    labelled_ids: list[str]
    """Ids of the labelled-dataset texts in the mix (exclude them from held-out evaluation)."""
    exact_counts: bool
    """Whether token counts come from the model's tokenizer (else a characters-based estimate)."""

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]

    @property
    def n_tokens(self) -> int:
        return sum(self.tokens)

    def provenance(self) -> pd.DataFrame:
        """One row per source: ``source, docs, tokens, share`` (share of tokens; sums to 1)."""
        import pandas as pd

        docs: Counter[str] = Counter()
        toks: Counter[str] = Counter()
        for doc, n in zip(self.documents, self.tokens):
            docs[doc.source] += 1
            toks[doc.source] += n
        order = [s for s in (*SOURCES, "hf", "docs") if s in docs]
        total = max(sum(toks.values()), 1)
        return pd.DataFrame(
            {
                "source": order,
                "docs": [docs[s] for s in order],
                "tokens": [toks[s] for s in order],
                "share": [toks[s] / total for s in order],
            }
        )


# ---------------------------------------------------------------------------------------
# Public entry points.


def iter_documents(
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
) -> Iterator[str]:
    """The corpus's documents, in training order (see the module docstring for the mix)."""
    for doc in iter_tagged_documents(cfg, tokenizer, model=model):
        yield doc.text


def iter_tagged_documents(
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
) -> Iterator[Document]:
    """Like :func:`iter_documents`, with each document's source and origin."""
    if cfg.source == "hf":
        yield from _iter_hf(cfg, _Counter(tokenizer))
        return
    yield from build_mix(cfg, tokenizer, model=model).documents


def build_mix(
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
) -> CorpusMix:
    """Materialise the offline mix: take each source's budget, then shuffle across sources.

    ``tokenizer`` (e.g. ``model.tokenizer``) makes the budgets exact model tokens; without it
    they are estimated from characters. ``model`` is needed only when ``cfg.model_samples > 0``.
    """
    if cfg.source != "offline":
        raise ValueError(f"build_mix builds the offline mix; this config has source={cfg.source!r}")
    count = _Counter(tokenizer if tokenizer is not None or model is None else model.tokenizer)
    filt = _Filter(cfg)
    streams = _offline_streams(cfg, filt, model)
    budgets = _initial_budgets(cfg, list(streams))
    taken = _fill_budgets(streams, budgets, count)
    documents = [(doc, n) for name in streams for doc, n in taken[name]]
    random.Random(f"{cfg.seed}:order").shuffle(documents)
    mix = CorpusMix(
        documents=[d for d, _ in documents],
        tokens=[n for _, n in documents],
        budgets=budgets,
        rejected=dict(filt.rejected),
        labelled_ids=sorted(doc.ref for doc, _ in taken.get("labelled", [])),
        exact_counts=count.exact,
    )
    if mix.n_tokens < cfg.target_tokens:
        log.warning(
            "The offline mix holds %d tokens, short of target_tokens=%d: every available source ran dry.",
            mix.n_tokens,
            cfg.target_tokens,
        )
    return mix


def describe_mix(
    cfg: CorpusConfig, tokenizer: Any | None = None, *, model: HookedTransformer | None = None
) -> pd.DataFrame:
    """What the offline mix contains: ``source, docs, tokens, share`` (shares sum to 1)."""
    return build_mix(cfg, tokenizer, model=model).provenance()


def labelled_ids_in_corpus(cfg: CorpusConfig) -> list[str]:
    """Ids of the labelled texts the offline mix may include (evaluate on the others)."""
    if cfg.source != "offline" or cfg.fractions.get("labelled", 0) <= 0:
        return []
    return sorted(_labelled_selection(cfg)[1])


def corpus_fingerprint(cfg: CorpusConfig) -> str:
    """A short hash of everything that decides the corpus's content (for cache keys).

    For the offline mix that includes the environment it reads: the Python version, the
    installed distributions, the fortune files and the labelled dataset. Installing a package
    changes the fingerprint, because its documentation may enter the mix.
    """
    ident: dict[str, Any] = {"config": cfg.to_dict(), "mix_version": MIX_VERSION}
    if cfg.source == "offline":
        dists = sorted(
            f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions() if d.metadata["Name"]
        )
        fortunes = [(str(p), p.stat().st_size) for p in _fortune_files(cfg.fortune_roots)]
        labelled = _labelled_path()
        ident.update(
            python=sys.version,
            distributions=dists,
            fortunes=fortunes,
            labelled=_file_sha256(labelled) if labelled.is_file() else None,
        )
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Token counting.


class _Counter:
    """Counts tokens of a batch of texts: exactly with a tokenizer, else estimated."""

    def __init__(self, tokenizer: Any | None) -> None:
        self.tokenizer = tokenizer
        self.exact = tokenizer is not None

    def __call__(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [_estimate_tokens(t) for t in texts]
        ids = encode(self.tokenizer, texts)
        return [len(x) for x in ids]


def encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of ``texts``, no special tokens added.

    Special-token strings that occur in the text (``<|endoftext|>`` in a docstring) are
    tokenized as plain text: as real special tokens they would become attention sinks with
    activations ~80x the norm of their neighbours.
    """
    return tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]


def _estimate_tokens(text: str) -> int:
    # Measured on SmolLM2's tokenizer: ~3.5 characters per token for ASCII code and prose,
    # ~1.4 for CJK and other non-ASCII text.
    n_ascii = sum(map(str.isascii, text))
    return max(1, round(n_ascii / 3.5 + (len(text) - n_ascii) / 1.4))


# ---------------------------------------------------------------------------------------
# Balancing.


class _Stream:
    """A lazy source of documents with a push-back buffer (a batch may overshoot the budget)."""

    def __init__(self, docs: Iterator[Document]) -> None:
        self.docs = docs
        self.pushed: deque[Document] = deque()
        self.exhausted = False

    def take(self, n: int) -> list[Document]:
        out = [self.pushed.popleft() for _ in range(min(n, len(self.pushed)))]
        while len(out) < n:
            doc = next(self.docs, None)
            if doc is None:
                self.exhausted = True
                break
            out.append(doc)
        return out

    def push_back(self, docs: Sequence[Document]) -> None:
        self.pushed.extendleft(reversed(docs))
        if docs:
            self.exhausted = False


def _initial_budgets(cfg: CorpusConfig, available: list[str]) -> dict[str, int]:
    weights = {s: cfg.fractions.get(s, 0.0) for s in available}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(
            f"No source of the offline mix is available with a positive share. Available: {available}; "
            f"fractions: {cfg.fractions}."
        )
    return {s: round(cfg.target_tokens * w / total) for s, w in weights.items() if w > 0}


def _fill_budgets(
    streams: dict[str, _Stream], budgets: dict[str, int], count: _Counter, batch: int = 64
) -> dict[str, list[tuple[Document, int]]]:
    """Take documents from each source up to its budget; pass the budget of dry sources on."""
    taken: dict[str, list[tuple[Document, int]]] = {s: [] for s in streams}
    have = {s: 0 for s in streams}
    want = dict(budgets)
    while True:
        for name, budget in want.items():
            while have[name] < budget and not streams[name].exhausted:
                docs = streams[name].take(batch)
                for i, (doc, n) in enumerate(zip(docs, count([d.text for d in docs]))):
                    if have[name] >= budget:
                        streams[name].push_back(docs[i:])
                        break
                    taken[name].append((doc, n))
                    have[name] += n
        deficit = sum(max(0, want[s] - have[s]) for s in want)
        open_ = [s for s in want if not streams[s].exhausted and budgets[s] > 0]
        if deficit <= 0 or not open_:
            return taken
        share = sum(budgets[s] for s in open_)
        for s in want:
            if streams[s].exhausted:
                want[s] = have[s]
        for s in open_:
            want[s] += max(1, round(deficit * budgets[s] / share))


# ---------------------------------------------------------------------------------------
# Filtering and chunking.

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


class _Filter:
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


def _strip_license_header(source: str) -> str:
    """Drop a leading comment block that is a licence (common at the top of .py files)."""
    lines = source.split("\n")
    end = 0
    while end < len(lines) and (lines[end].startswith("#") or not lines[end].strip()):
        end += 1
    header = "\n".join(lines[:end]).lower()
    if any(marker in header for marker in _LICENSE_MARKERS):
        return "\n".join(lines[end:])
    return source


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


# ---------------------------------------------------------------------------------------
# The offline sources. Each yields documents lazily in a seeded order.


def _offline_streams(cfg: CorpusConfig, filt: _Filter, model: HookedTransformer | None) -> dict[str, _Stream]:
    factories: dict[str, Callable[[], Iterator[Document] | None]] = {
        "python_stdlib": lambda: _stdlib_docs(cfg, filt),
        "docstrings": lambda: _docstring_docs(cfg, filt),
        "package_docs": lambda: _package_docs(cfg, filt),
        "fortunes_en": lambda: _fortune_docs(cfg, filt, english=True),
        "fortunes_intl": lambda: _fortune_docs(cfg, filt, english=False),
        "labelled": lambda: _labelled_docs(cfg, filt),
        "model_samples": lambda: _sample_docs(cfg, filt, model),
    }
    streams = {}
    for name in SOURCES:
        if cfg.fractions.get(name, 0) <= 0:
            continue
        docs = factories[name]()
        if docs is not None:
            streams[name] = _Stream(docs)
    return streams


def _rng(cfg: CorpusConfig, name: str) -> random.Random:
    # A string seed is hashed with SHA-512, so every source gets an independent stream.
    return random.Random(f"{cfg.seed}:{name}")


def _shuffled(paths: Iterable[str | Path], rng: random.Random) -> list[Path]:
    out = sorted({str(p) for p in paths})
    rng.shuffle(out)
    return [Path(p) for p in out]


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _site_packages() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(Path(p) for p in paths if Path(p).is_dir())


def _walk(root: Path, skip_dirs: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every file under ``root`` as a string (os.walk and strings: ~5x faster than rglob)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs)
        for name in files:
            yield os.path.join(folder, name)


def _stdlib_files() -> list[str]:
    skip = frozenset({"site-packages", "dist-packages", "__pycache__"})
    return [p for p in _walk(_stdlib_root(), skip) if p.endswith(".py")]


def _stdlib_docs(cfg: CorpusConfig, filt: _Filter) -> Iterator[Document]:
    root = _stdlib_root()
    for path in _shuffled(_stdlib_files(), _rng(cfg, "python_stdlib")):
        source = _read_text(path)
        if source is None:
            continue
        for i, chunk in enumerate(chunk_text(_strip_license_header(source), cfg.max_doc_chars, code=True)):
            text = filt(chunk)
            if text is not None:
                yield Document(text, "python_stdlib", f"{path.relative_to(root)}#{i}")


def _package_py_files() -> list[str]:
    return [p for p in _package_files() if p.endswith(".py")]


def _package_files() -> list[str]:
    return [p for root in _site_packages() for p in _walk(root, frozenset({"__pycache__"}))]


def _docstring_docs(cfg: CorpusConfig, filt: _Filter) -> Iterator[Document]:
    for path in _shuffled(_package_py_files(), _rng(cfg, "docstrings")):
        for name, doc in _docstrings(path):
            for i, chunk in enumerate(chunk_text(doc, cfg.max_doc_chars)):
                text = filt(chunk)
                if text is not None:
                    yield Document(text, "docstrings", f"{path.name}:{name}#{i}")


def _docstrings(path: Path, max_bytes: int = 1_000_000) -> list[tuple[str, str]]:
    """(qualified name, cleaned docstring) of a module and its classes and functions."""
    try:
        if path.stat().st_size > max_bytes:  # generated tables; slow to parse, little prose
            return []
        source = _read_text(path)
        if source is None:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old code
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, OSError):
        return []
    out = []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append((getattr(node, "name", "<module>"), doc))
    return out


_SKIP_DOC_NAME = re.compile(
    r"^(licen[cs]e|copying|notice|authors|record|entry_points|top_level|requires|sources|"
    r"dependency_links|namespace_packages|vendor|cmakelists|wheel|installer|requested)",
    re.IGNORECASE,
)


def _package_doc_files() -> list[str]:
    out = []
    for path in _package_files():
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


def _package_docs(cfg: CorpusConfig, filt: _Filter) -> Iterator[Document]:
    for path in _shuffled(_package_doc_files(), _rng(cfg, "package_docs")):
        if path.stat().st_size > 2_000_000:
            continue
        raw = _read_text(path)
        if raw is None:
            continue
        text = _metadata_description(raw) if path.name == "METADATA" else raw
        ref = path.parent.name if path.name == "METADATA" else path.name
        for i, chunk in enumerate(chunk_text(text, cfg.max_doc_chars)):
            cleaned = filt(chunk)
            if cleaned is not None:
                yield Document(cleaned, "package_docs", f"{ref}#{i}")


# Fortune files outside a language folder that are not English (fortunes-zh, fortunes-br).
_NON_ENGLISH_FILES = {"chinese": "zh", "tang300": "zh", "song100": "zh", "brasil": "pt"}
_LANG_DIR_RE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
# Offensive collections live in "off" folders; they are not installed by our packages anyway.
_SKIP_FORTUNE_DIRS = {"off"}


def _fortune_files(roots: Sequence[str]) -> list[Path]:
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


def _split_fortunes(text: str) -> list[str]:
    return [f for f in re.split(r"^%\s*$", text, flags=re.MULTILINE) if f.strip()]


def _fortune_docs(cfg: CorpusConfig, filt: _Filter, *, english: bool) -> Iterator[Document] | None:
    name = "fortunes_en" if english else "fortunes_intl"
    files = [p for p in _fortune_files(cfg.fortune_roots) if (fortune_language(p) == "en") == english]
    if not files:
        log.info("No %s fortune databases under %s; that source is skipped.", name, list(cfg.fortune_roots))
        return None
    rng = _rng(cfg, name)
    by_lang: dict[str, list[Path]] = {}
    for path in _shuffled(files, rng):
        by_lang.setdefault(fortune_language(path), []).append(path)
    return _round_robin([_fortunes_of(paths, name, filt, rng) for _, paths in sorted(by_lang.items())])


def _fortunes_of(paths: list[Path], source: str, filt: _Filter, rng: random.Random) -> Iterator[Document]:
    for path in paths:
        raw = _read_text(path)
        if raw is None:
            continue
        fortunes = list(enumerate(_split_fortunes(raw)))
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


def _labelled_path() -> Path:
    from saelab.data import DATASET_FILE
    from saelab.paths import data_dir

    return data_dir() / DATASET_FILE


def _labelled_selection(cfg: CorpusConfig) -> tuple[Any, set[str]]:
    """The labelled frame and the ids chosen for the mix (a seeded share of every category)."""
    from saelab.data import load_dataset

    frame = load_dataset()
    rng = _rng(cfg, "labelled")
    chosen: set[str] = set()
    for _, group in frame.groupby("category", sort=True):
        ids = sorted(group["id"].astype(str))
        rng.shuffle(ids)
        chosen.update(ids[: round(cfg.labelled_fraction * len(ids))])
    return frame, chosen


def _labelled_docs(cfg: CorpusConfig, filt: _Filter) -> Iterator[Document] | None:
    if cfg.labelled_fraction <= 0 or not _labelled_path().is_file():
        return None
    frame, chosen = _labelled_selection(cfg)
    rows = frame[frame["id"].astype(str).isin(chosen)]
    order = list(range(len(rows)))
    _rng(cfg, "labelled-order").shuffle(order)

    def gen() -> Iterator[Document]:
        for i in order:
            text = filt(rows["text"].iloc[i])
            if text is not None:
                yield Document(text, "labelled", str(rows["id"].iloc[i]))

    return gen()


# ---------------------------------------------------------------------------------------
# Text written by the model itself.

DEFAULT_SAMPLE_PROMPTS: tuple[str, ...] = (
    # conversational
    "A: Hey! How was your weekend?\nB:",
    "So I was talking to my mom on the phone yesterday, and she said",
    "Honestly, I don't know what to do about my roommate. Every night he",
    "Q: What's the best way to learn to cook if you've never cooked before?\nA:",
    # social media
    "Just finished my first half marathon!!! 🏃‍♀️",
    "Can we talk about how good this coffee place is?? #coffee",
    "Thread 🧵: 10 things I wish I knew before moving to a new city.\n\n1.",
    "lol my cat just knocked my phone off the table AGAIN",
    "Review: ★★☆☆☆ Ordered the large pizza and",
    # formal writing
    "Dear Ms. Thompson,\n\nI am writing to inform you that",
    "Dear Hiring Manager,\n\nI am pleased to submit my application for",
    "To whom it may concern,\n\nThis letter confirms that",
    "MEMORANDUM\n\nTo: All Staff\nFrom: Human Resources\nSubject: Updated leave policy\n\n",
    "Subject: Follow-up on our meeting\n\nHi Daniel,\n\nThank you for taking the time to",
    "The Board of Directors is pleased to announce that",
    # news and everyday prose
    "LONDON (Reuters) - ",
    "Local residents gathered on Saturday to",
    "Here is my grandmother's recipe for apple pie. First,",
)


def sample_model_texts(
    model: HookedTransformer,
    prompts: Sequence[str] = DEFAULT_SAMPLE_PROMPTS,
    n: int = 64,
    max_new_tokens: int = 128,
    seed: int = 0,
    *,
    temperature: float = 0.8,
    top_p: float = 0.95,
    cache: bool = True,
    progress: bool = False,
) -> list[str]:
    """``n`` texts the model writes as continuations of ``prompts`` (split as evenly as
    possible across the prompts, in order).

    Each text is the prompt plus the sampled continuation, cut at the first end-of-text.
    Results are cached under ``saelab.paths.cache_dir() / "corpus"`` keyed on the model and
    every argument, so a second call (or a rebuilt corpus) costs nothing.
    """
    import torch
    from tqdm.auto import tqdm

    from saelab.paths import cache_dir

    if n < 0 or max_new_tokens < 1 or not prompts:
        raise ValueError(
            f"Need n >= 0, max_new_tokens >= 1 and at least one prompt; got n={n}, "
            f"max_new_tokens={max_new_tokens}, {len(prompts)} prompts"
        )
    key = {
        "model": model.cfg.model_name,
        "prompts": list(prompts),
        "n": n,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "temperature": temperature,
        "top_p": top_p,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "corpus" / f"samples-{digest}.json"
    if cache and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["texts"]
    per_prompt = [len(range(i, n, len(prompts))) for i in range(len(prompts))]
    texts: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for prompt, k in tqdm(list(zip(prompts, per_prompt)), desc="model samples", disable=not progress):
            if k:
                texts.extend(_generate(model, prompt, k, max_new_tokens, temperature, top_p))
    if cache:
        from saelab.atomic import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "texts": texts}, ensure_ascii=False))
    return texts


def _generate(
    model: HookedTransformer, prompt: str, k: int, max_new_tokens: int, temperature: float, top_p: float
) -> list[str]:
    import torch

    tokenizer = model.tokenizer
    bos = [tokenizer.bos_token_id] if model.cfg.default_prepend_bos and tokenizer.bos_token_id is not None else []
    ids = torch.tensor([bos + encode(tokenizer, [prompt])[0]] * k, device=model.cfg.device)
    out = model.generate(
        ids,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        stop_at_eos=True,
        verbose=False,
    )
    texts = []
    stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    for row in out[:, len(bos) :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut]))
    return texts


def _sample_docs(cfg: CorpusConfig, filt: _Filter, model: HookedTransformer | None) -> Iterator[Document] | None:
    if cfg.model_samples <= 0:
        return None
    if model is None:
        raise ValueError(
            f"CorpusConfig.model_samples={cfg.model_samples} needs the model to write them: pass "
            "model=... (build_store does), or set model_samples=0."
        )
    texts = sample_model_texts(model, n=cfg.model_samples, max_new_tokens=cfg.sample_max_new_tokens, seed=cfg.seed)

    def gen() -> Iterator[Document]:
        for i, raw in enumerate(texts):
            text = filt(raw)
            if text is not None:
                yield Document(text, "model_samples", f"sample-{i}")

    return gen()


# ---------------------------------------------------------------------------------------
# Hugging Face datasets (online).


def _iter_hf(cfg: CorpusConfig, count: _Counter) -> Iterator[Document]:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "CorpusConfig(source='hf') streams text with the `datasets` package, which is not "
            "installed (pip install datasets). Offline, use CorpusConfig(source='offline')."
        ) from err
    try:
        stream = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config, split=cfg.hf_split, streaming=True)
        if cfg.hf_shuffle_buffer:
            stream = stream.shuffle(seed=cfg.seed, buffer_size=cfg.hf_shuffle_buffer)
    except Exception as err:  # the hub raises many types (ConnectionError, HfHubHTTPError, ...)
        raise ConnectionError(
            f"Could not stream {cfg.hf_dataset!r} (split {cfg.hf_split!r}) from the Hugging Face hub: "
            f"{err}. This needs the network; offline, use CorpusConfig(source='offline')."
        ) from err
    filt = _Filter(cfg)
    total = 0
    for i, row in enumerate(stream):
        if cfg.hf_text_field not in row:
            raise KeyError(f"{cfg.hf_dataset!r} rows have no field {cfg.hf_text_field!r}; fields: {sorted(row)}")
        for j, chunk in enumerate(chunk_text(str(row[cfg.hf_text_field]), cfg.max_doc_chars)):
            text = filt(chunk)
            if text is None:
                continue
            yield Document(text, "hf", f"{cfg.hf_dataset}[{i}]#{j}")
            total += count([text])[0]
            if total >= cfg.target_tokens:
                return


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
