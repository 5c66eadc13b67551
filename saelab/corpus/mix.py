"""The offline mix: documents from every declared source, balanced to a token budget.

Built from local files, with no network. Each source gets a share of
``CorpusConfig.target_tokens`` (model tokens, counted with the tokenizer when one is given):

===================  =======  ====================================================================
source               share    what it is
===================  =======  ====================================================================
``python_stdlib``    0.30     Python standard-library ``.py`` files (``sysconfig`` ``stdlib``),
                              licence headers stripped, cut at top-level ``def``/``class`` blocks.
``docstrings``       0.15     module/class/function docstrings of the declared packages'
                              ``.py`` files (technical English prose, maths, examples).
``package_docs``     0.15     documentation shipped with the declared packages: the long
                              description in each ``*.dist-info/METADATA`` (the project README),
                              and README, ``.md``, ``.rst``, ``.txt`` files (licences excluded).
``fortunes_en``      0.20     the declared Debian ``fortunes`` / ``fortunes-min`` databases:
                              quotations, jokes, dialogue, poems, definitions; everyday English.
``fortunes_intl``    0.15     the declared other-language fortune packages (de, es, it, ru, pt,
                              zh, ...), taken round-robin across languages so no one dominates.
``labelled``         0.01     a seeded, per-category ``labelled_fraction`` of
                              :func:`saelab.load_dataset`. The ids used are in
                              ``CorpusMix.labelled_ids``; the rest are never trained on.
``model_samples``    0.04     only when ``model_samples > 0``: continuations the model itself
                              writes from prompts for registers the other sources lack
                              (chat, social media, formal letters, e-mail, reviews); see
                              :func:`sample_model_texts`.
===================  =======  ====================================================================

The declared packages are ``CorpusConfig.packages`` (saelab's runtime requirements, pinned as
in ``requirements.txt``) and ``CorpusConfig.fortune_packages`` (Debian's, pinned); only their
files are read, so installing a tool changes nothing, and a declared package that is missing
or at another version raises :class:`~saelab.corpus.environment.CorpusSourceError` with the
fix (see :mod:`saelab.corpus.environment`). Shares are renormalised over the sources in use
(no model samples asked for). A source that runs dry gives its unused budget to the others
in proportion to their shares, so the mix reaches the target whenever the sources together
can. Within a source the order is a seeded shuffle of files (then of the documents in them),
and the final document order is a seeded shuffle across sources, so any prefix of the mix (an
activation store takes one) is balanced too. Everything is deterministic given the config
and the Python that runs; :func:`corpus_fingerprint` summarises both for cache keys.

Documents are cut at ``max_doc_chars`` (on block, paragraph, then line boundaries), and junk
is dropped: binary or undecodable files, minified or data files (very long lines or runs
without whitespace, few letters), licence boilerplate, terminal escape codes, and exact
duplicates (the same licence or fortune shipped twice). ``CorpusMix.rejected`` counts why.
How many tokens each source holds is measured in ``data/README.md``.
"""

from __future__ import annotations

import logging
import platform
import random
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from saelab._util.keys import file_digest, stable_hash
from saelab.corpus.config import FORTUNE_SOURCES, MIX_VERSION, PACKAGE_SOURCES, SOURCES, CorpusConfig, Document
from saelab.corpus.counting import TokenCounter
from saelab.corpus.environment import CorpusEnvironment, debian_package_files, declared_distributions
from saelab.corpus.filters import DocumentFilter
from saelab.corpus.sources import hf, offline_documents
from saelab.corpus.sources.labelled import labelled_path, labelled_selection
from saelab.corpus.sources.python_stdlib import stdlib_digest

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens import HookedTransformer

log = logging.getLogger(__name__)


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
        for doc, n in zip(self.documents, self.tokens, strict=True):
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
    env: CorpusEnvironment | None = None,
) -> Iterator[str]:
    """The corpus's documents, in training order (see the module docstring for the mix)."""
    for doc in iter_tagged_documents(cfg, tokenizer, model=model, env=env):
        yield doc.text


def iter_tagged_documents(
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
    env: CorpusEnvironment | None = None,
) -> Iterator[Document]:
    """Like :func:`iter_documents`, with each document's source and origin."""
    if cfg.source == "hf":
        yield from hf.documents(cfg, TokenCounter(tokenizer))
        return
    yield from build_mix(cfg, tokenizer, model=model, env=env).documents


def build_mix(
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
    env: CorpusEnvironment | None = None,
) -> CorpusMix:
    """Materialise the offline mix: take each source's budget, then shuffle across sources.

    ``tokenizer`` (e.g. ``model.tokenizer``) makes the budgets exact model tokens; without it
    they are estimated from characters. ``model`` is needed only when ``cfg.model_samples > 0``.
    ``env`` says where the declared sources are installed (default: this interpreter and
    machine). Raises :class:`~saelab.corpus.environment.CorpusSourceError` when a declared
    source is missing or at another version.
    """
    if cfg.source != "offline":
        raise ValueError(f"build_mix builds the offline mix; this config has source={cfg.source!r}")
    count = TokenCounter(tokenizer if tokenizer is not None or model is None else model.tokenizer)
    filt = DocumentFilter(cfg)
    sources = offline_documents(cfg, filt, model, env or CorpusEnvironment())
    streams = {name: _Stream(docs) for name, docs in sources.items()}
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
    cfg: CorpusConfig,
    tokenizer: Any | None = None,
    *,
    model: HookedTransformer | None = None,
    env: CorpusEnvironment | None = None,
) -> pd.DataFrame:
    """What the offline mix contains: ``source, docs, tokens, share`` (shares sum to 1)."""
    return build_mix(cfg, tokenizer, model=model, env=env).provenance()


def labelled_ids_in_corpus(cfg: CorpusConfig) -> list[str]:
    """Ids of the labelled texts the offline mix may include (evaluate on the others)."""
    if cfg.source != "offline" or cfg.fractions.get("labelled", 0) <= 0:
        return []
    return sorted(labelled_selection(cfg)[1])


def corpus_fingerprint(cfg: CorpusConfig, env: CorpusEnvironment | None = None) -> str:
    """A short hash of everything that decides the corpus's content (for cache keys).

    For the offline mix: the config (its declared, pinned packages included), the Python
    version and standard library, and the labelled dataset. It first checks that the
    declared packages are installed as pinned (raising
    :class:`~saelab.corpus.environment.CorpusSourceError` otherwise), so that a key is only
    ever given for the corpus it names. Undeclared packages do not enter it: they are never read.
    """
    ident: dict[str, Any] = {"config": cfg.to_dict(), "mix_version": MIX_VERSION}
    if cfg.source == "offline":
        env = env or CorpusEnvironment()
        uses = {s for s, share in cfg.fractions.items() if share > 0}
        if uses & set(PACKAGE_SOURCES):
            declared_distributions(cfg.packages, env)
        if uses & set(FORTUNE_SOURCES):
            debian_package_files(cfg.fortune_packages, env)
        labelled = labelled_path()
        ident.update(
            # The Python decides what ast parses (docstrings) as well as the standard library.
            python=f"{platform.python_implementation()} {platform.python_version()}",
            python_stdlib=stdlib_digest(env) if "python_stdlib" in uses else None,
            labelled=file_digest(labelled) if labelled.is_file() else None,
        )
    return stable_hash(ident)


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
    streams: dict[str, _Stream], budgets: dict[str, int], count: TokenCounter, batch: int = 64
) -> dict[str, list[tuple[Document, int]]]:
    """Take documents from each source up to its budget; pass the budget of dry sources on."""
    taken: dict[str, list[tuple[Document, int]]] = {s: [] for s in streams}
    have = {s: 0 for s in streams}
    want = dict(budgets)
    while True:
        for name, budget in want.items():
            while have[name] < budget and not streams[name].exhausted:
                docs = streams[name].take(batch)
                for i, (doc, n) in enumerate(zip(docs, count([d.text for d in docs]), strict=True)):
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
