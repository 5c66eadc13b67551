"""What a corpus is made of: its configuration, and one document with its origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from saelab._util.config import JsonConfig

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
class CorpusConfig(JsonConfig):
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
        self.raise_problems(_config_problems(self))


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
