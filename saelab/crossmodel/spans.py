"""Two tokenizers on the same texts: features pooled over word spans both models can see.

SmolLM2 and Gemma cut text differently ("naïve" is two tokens for one, one for the other), so
token rows cannot be paired. Character spans can: each text is cut into words and runs of
punctuation (:data:`SPAN_PATTERN`), each model's tokens are assigned to the spans their
character offsets overlap, and every feature is max-pooled over a span's tokens. A span is
kept only when both models have a token on it (a text cut at one model's context loses its
tail for that model only).

Texts are skipped, with a count per reason, never misaligned: an empty text, one with no
word, one a model has no tokens for, and one whose re-tokenization with offsets is not the
token sequence the features were extracted from.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from transformer_lens import HookedTransformer

from saelab.extract.per_token import PerTokenFeatures
from saelab.extract.tokens import encode_with_offsets, tokenizer_of

SPAN_PATTERN = re.compile(r"\w+|[^\w\s]+")
"""A span is a run of word characters or a run of punctuation; whitespace is in no span."""

Offsets = list[tuple[int, int]]
"""Character ``(start, end)`` of each stored token of one text."""


def word_spans(text: str) -> Offsets:
    """The ``(start, end)`` character spans of ``text``'s words and punctuation runs."""
    return [m.span() for m in SPAN_PATTERN.finditer(text)]


def token_offsets(model: HookedTransformer, texts: Sequence[str], per_token: PerTokenFeatures) -> list[Offsets | None]:
    """Character offsets of the tokens ``per_token`` holds for each text (BOS excluded, as
    :func:`saelab.cached_per_token` stores them); None where the tokenizer's ids with offsets
    are not those tokens, so the text is skipped rather than misaligned."""
    if per_token.n_texts != len(texts):
        raise ValueError(f"per_token holds {per_token.n_texts} texts but {len(texts)} texts were given")
    tokenizer = tokenizer_of(model)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{model.cfg.model_name}'s tokenizer gives no character offsets (not a fast tokenizer)")
    out: list[Offsets | None] = []
    for i, (ids, offsets) in enumerate(zip(*encode_with_offsets(tokenizer, texts), strict=True)):
        stored = per_token.token_ids[i]
        same = list(ids[: len(stored)]) == list(stored)
        out.append([(int(a), int(b)) for a, b in offsets[: len(stored)]] if same else None)
    return out


@dataclass
class TextAlignment:
    """One kept text: its spans and, per side, which token rows fall on which span."""

    text: int
    """Index of the text in the given list."""
    n_spans: int
    tokens: tuple[np.ndarray, np.ndarray]
    """Per side, ``[n_pairs, 2]`` int arrays of (token row within the text, span index)."""
    kept: np.ndarray
    """``[n_spans]``: which of :func:`word_spans` of the text each kept span is."""


@dataclass
class SpanAlignment:
    """Which spans of which texts both tokenizations cover."""

    texts: list[TextAlignment]
    skipped: Counter[str] = field(default_factory=Counter)
    """Texts left out, by reason."""
    spans_dropped: int = 0
    """Spans of kept texts that only one side has a token on (a text cut at one context)."""

    @property
    def n_spans(self) -> int:
        return sum(t.n_spans for t in self.texts)

    def words(self, texts: Sequence[str]) -> list[str]:
        """The lower-cased text of every kept span, in row order (``texts``: those aligned)."""
        out = []
        for kept in self.texts:
            spans = word_spans(texts[kept.text])
            out += [texts[kept.text][slice(*spans[j])].lower() for j in kept.kept]
        return out


def align_spans(texts: Sequence[str], offsets_a: Sequence[Offsets | None], offsets_b: Sequence[Offsets | None]
                ) -> SpanAlignment:  # fmt: skip
    """Pair two tokenizations of ``texts`` through their word spans (see the module doc)."""
    if not len(texts) == len(offsets_a) == len(offsets_b):
        raise ValueError(f"{len(texts)} texts but {len(offsets_a)} and {len(offsets_b)} offset lists")
    kept, skipped, dropped = [], Counter[str](), 0
    for i, text in enumerate(texts):
        reason, result = _align_one(i, text, offsets_a[i], offsets_b[i])
        if result is None:
            skipped[reason] += 1
            continue
        kept.append(result[0])
        dropped += result[1]
    return SpanAlignment(kept, skipped, dropped)


def _align_one(i: int, text: str, off_a: Offsets | None, off_b: Offsets | None
               ) -> tuple[str, tuple[TextAlignment, int] | None]:  # fmt: skip
    if off_a is None or off_b is None:
        return "tokens differ from the extracted features' tokens", None
    spans = word_spans(text)
    if not spans:
        return "no word or punctuation (empty or whitespace)", None
    if not off_a or not off_b:
        return "one model has no tokens for it", None
    pairs_a, pairs_b = _overlaps(off_a, spans), _overlaps(off_b, spans)
    both = np.intersect1d(np.unique(pairs_a[:, 1]), np.unique(pairs_b[:, 1]))
    if both.size == 0:
        return "no span both models' tokens cover", None
    renumber = np.full(len(spans), -1)
    renumber[both] = np.arange(both.size)
    tokens = tuple(_keep(pairs, renumber) for pairs in (pairs_a, pairs_b))
    aligned = TextAlignment(i, int(both.size), tokens, both)  # type: ignore[arg-type]
    return "", (aligned, len(spans) - int(both.size))


def _overlaps(offsets: Offsets, spans: Offsets) -> np.ndarray:
    """``[n_pairs, 2]`` (token, span) for every token whose characters overlap a span."""
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    pairs = []
    for t, (a, b) in enumerate(offsets):
        if b <= a:
            continue
        # spans are sorted and disjoint: those with end > a and start < b overlap [a, b)
        first, last = np.searchsorted(ends, a, side="right"), np.searchsorted(starts, b, side="left")
        pairs.extend((t, s) for s in range(first, last))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _keep(pairs: np.ndarray, renumber: np.ndarray) -> np.ndarray:
    spans = renumber[pairs[:, 1]]
    return np.stack([pairs[spans >= 0, 0], spans[spans >= 0]], axis=1)


def span_features(per_token: PerTokenFeatures, alignment: SpanAlignment, side: int) -> sp.csr_matrix:
    """``[n_spans, d_sae]``: each kept span's features, max-pooled over its tokens on ``side``
    (0: the first tokenization given to :func:`align_spans`, 1: the second)."""
    blocks = []
    for kept in alignment.texts:
        dense = per_token.dense(kept.text)  # [pos, d_sae]
        pairs = torch.from_numpy(kept.tokens[side])
        if pairs.numel() and int(pairs[:, 0].max()) >= dense.shape[0]:
            raise ValueError(
                f"text {kept.text}: the alignment names token {int(pairs[:, 0].max())} but the "
                f"features hold {dense.shape[0]} tokens; align with these features' offsets"
            )
        pooled = torch.zeros(kept.n_spans, per_token.d_sae)
        # SAE activations are >= 0, so a zero start is the max's identity.
        spans = pairs[:, 1:2].expand(-1, per_token.d_sae)
        pooled.scatter_reduce_(0, spans, dense[pairs[:, 0]], "amax", include_self=True)
        blocks.append(sp.csr_matrix(pooled.numpy()))
    if not blocks:
        return sp.csr_matrix((0, per_token.d_sae), dtype=np.float32)
    return sp.csr_matrix(sp.vstack(blocks, format="csr"))


@dataclass
class SpanSample:
    """Both models' SAE features on the same word spans: ``features[model][hook]`` is
    ``[n_spans, d_sae]``, row ``r`` the same span for every model and hook."""

    features: dict[str, dict[str, sp.csr_matrix]]
    alignment: SpanAlignment
    words: list[str] | None = None
    """``[n_spans]`` each span's lower-cased word, for the null that keeps word identity
    (:func:`saelab.crossmodel.match_models`); None leaves that null out."""

    @property
    def n_spans(self) -> int:
        return self.alignment.n_spans

    def describe(self) -> str:
        skipped = ", ".join(f"{n} ({why})" for why, n in self.alignment.skipped.items()) or "none"
        return (
            f"{self.n_spans:,} word spans from {len(self.alignment.texts)} texts; skipped texts: {skipped}; "
            f"{self.alignment.spans_dropped} spans only one model covers were left out"
        )


def span_sample(
    texts: Sequence[str],
    sides: Mapping[str, tuple[HookedTransformer, Mapping[str, PerTokenFeatures]]],
) -> SpanSample:
    """Align two models' per-token features of ``texts`` on word spans.

    ``sides``: ``{model_name: (model, {hook: PerTokenFeatures})}`` for exactly two models, each
    model's features extracted from ``texts`` in one call (same tokens for all its hooks).
    """
    if len(sides) != 2:
        raise ValueError(f"span_sample compares exactly two models; got {list(sides)}")
    offsets = []
    for name, (model, by_hook) in sides.items():
        if not by_hook:
            raise ValueError(f"{name}: no per-token features given")
        first = next(iter(by_hook.values()))
        if any(pt.token_ids != first.token_ids for pt in by_hook.values()):
            raise ValueError(f"{name}: the hooks' features are of different tokens; extract them in one call")
        offsets.append(token_offsets(model, texts, first))
    alignment = align_spans(texts, offsets[0], offsets[1])
    features = {
        name: {hook: span_features(pt, alignment, side) for hook, pt in by_hook.items()}
        for side, (name, (_, by_hook)) in enumerate(sides.items())
    }
    return SpanSample(features, alignment, alignment.words(texts))
