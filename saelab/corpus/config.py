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

PACKAGE_SOURCES: tuple[str, ...] = ("docstrings", "package_docs")
"""The sources that read the declared Python distributions (``CorpusConfig.packages``)."""
FORTUNE_SOURCES: tuple[str, ...] = ("fortunes_en", "fortunes_intl")
"""The sources that read the declared Debian packages (``CorpusConfig.fortune_packages``)."""

DEFAULT_FRACTIONS: dict[str, float] = {
    "python_stdlib": 0.30,
    "docstrings": 0.15,
    "package_docs": 0.15,
    "fortunes_en": 0.20,
    "fortunes_intl": 0.15,
    "labelled": 0.01,
    "model_samples": 0.04,
}

Pins = tuple[tuple[str, str], ...]
"""(name, version) pairs: the packages a source reads, each at exactly that version."""

CORPUS_PACKAGES: Pins = (
    ("transformer-lens", "3.9.0"),
    ("sae-lens", "6.54.12"),
    ("transformers", "5.23.0"),
    ("gguf", "0.19.0"),
    ("safetensors", "0.8.0"),
    ("tokenizers", "0.23.3"),
    ("jaxtyping", "0.3.11"),
    ("numpy", "2.4.6"),
    ("pandas", "3.1.1"),
    ("scipy", "1.17.1"),
    ("scikit-learn", "1.9.1"),
    ("umap-learn", "0.5.12"),
    ("tqdm", "4.70.1"),
    ("lazy-loader", "0.6"),
    ("pydantic", "2.14.4"),
    ("plotly", "7.1.0"),
    ("kaleido", "1.5.0"),
    ("ipywidgets", "8.1.9"),
    ("ipykernel", "7.4.0"),
    ("nbclient", "0.11.0"),
    ("papermill", "2.7.0"),
)
"""The Python distributions whose docs and docstrings enter the mix: saelab's runtime
requirements, pinned as in ``requirements.txt`` (a test keeps the two equal). Lint and test
tools, JupyterLab and torch (whose version carries the wheel's build, ``+cpu``) stay out, so
installing a tool never changes the corpus."""

FORTUNE_PACKAGES: Pins = (
    ("fortunes", "1:1.99.1-7.3"),
    ("fortunes-min", "1:1.99.1-7.3"),
    ("fortunes-de", "0.35-1"),
    ("fortunes-es", "1.36"),
    ("fortunes-it", "1.99-4.1"),
    ("fortunes-ru", "1.52-3.1"),
    ("fortunes-br", "20220821"),
    ("fortunes-zh", "2.98"),
    ("fortunes-debian-hints", "2.01.4"),
)
"""The Debian packages whose fortune databases enter the mix, at their Debian 12 (bookworm)
versions; ``make setup`` installs them (``scripts/ensure_system_deps.py``)."""

# Bump when the mixing recipe changes, so stores built from an older mix are not reused.
MIX_VERSION = 2


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
    """offline: share of ``target_tokens`` per source (renormalised over the sources in use;
    ``model_samples`` is in use only when ``model_samples > 0``, ``labelled`` only when
    ``labelled_fraction > 0``). Every other source with a share must be installed as declared."""
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
    packages: Pins = CORPUS_PACKAGES
    """offline: the Python distributions ``docstrings`` and ``package_docs`` read, as
    (name, version). Only these are read, whatever else is installed; one that is missing or
    at another version is an error (:class:`~saelab.corpus.environment.CorpusSourceError`)."""
    fortune_packages: Pins = FORTUNE_PACKAGES
    """offline: the Debian packages ``fortunes_en`` and ``fortunes_intl`` read, as (name,
    version); checked the same way against Debian's package database."""
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
        object.__setattr__(self, "packages", _pins(self.packages, "packages"))
        object.__setattr__(self, "fortune_packages", _pins(self.fortune_packages, "fortune_packages"))
        object.__setattr__(self, "fractions", {k: float(v) for k, v in self.fractions.items()})
        self.raise_problems(_config_problems(self))


def _pins(pairs: object, name: str) -> Pins:
    """``pairs`` as a tuple of (name, version) string pairs (JSON gives lists of lists)."""
    if not isinstance(pairs, tuple | list) or not all(
        isinstance(p, tuple | list) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in pairs
    ):
        raise ValueError(f"{name} must be (name, version) pairs of non-empty strings, got {pairs!r}")
    return tuple((str(package), str(version)) for package, version in pairs)


def _config_problems(cfg: CorpusConfig) -> list[str]:
    out = []
    for sources, field_name in ((PACKAGE_SOURCES, "packages"), (FORTUNE_SOURCES, "fortune_packages")):
        shared = [s for s in sources if cfg.fractions.get(s, 0) > 0]
        if cfg.source == "offline" and shared and not getattr(cfg, field_name):
            out.append(f"fractions gives {shared} a share but {field_name} is empty; declare what they read")
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
