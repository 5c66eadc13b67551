"""An n-gram explainer in the spirit of Neuron-to-Graph (N2G; Foote et al. 2023).

For each explain context, start at its max-activating token and grow the left context one
token at a time (n = 1, 2, ... up to ``max_n``) until the n-gram is *sufficient*: wherever it
occurs in the explain contexts, the feature keeps most of its activation (mean activation on
the n-gram's last token, over all its occurrences, at least ``keep`` times this context's
peak). The first such n is the minimal context that explains this peak; a context with no
sufficient n-gram up to ``max_n`` contributes nothing (its peak depends on more than the last
``max_n`` tokens).

N2G prunes a prompt by re-running the model on truncated copies of it. We decide on the
activations we already hold instead: an n-gram's other occurrences in the explain contexts
stand in for those re-runs. That needs no model, but sees only the occurrences the explain
windows happen to contain; the held-out scoring split is what checks the result.

Identical patterns from different contexts merge. Each pattern's weight is its mean
activation over its occurrences relative to the feature's max over the explain contexts; the
explanation keeps up to ``max_patterns`` of them, by the total activation they cover.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from saelab._util.config import JsonConfig
from saelab.autointerp.explainers.base import PatternExplainer, Scale
from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.autointerp.patterns import Pattern, relative_weight


@dataclass(frozen=True, kw_only=True)
class NgramConfig(JsonConfig):
    max_n: int = 4
    """Longest left context tried, in tokens, the firing token included."""
    keep: float = 0.5
    """An n-gram is sufficient when its mean activation over its occurrences is at least this
    share of the peak it explains."""
    max_patterns: int = 8
    """How many patterns the explanation lists at most."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_n < 1:
            problems.append(f"max_n must be at least 1, got {self.max_n}")
        if not 0 < self.keep <= 1:
            problems.append(f"keep must be in (0, 1], got {self.keep}")
        if self.max_patterns < 1:
            problems.append(f"max_patterns must be at least 1, got {self.max_patterns}")
        self.raise_problems(problems)


class _Occurrences(NamedTuple):
    total: float
    """Sum of the activation on the n-gram's last token over its occurrences."""
    count: int

    @property
    def mean(self) -> float:
        return self.total / self.count


class NgramPatternExplainer(PatternExplainer):
    """Explains a feature by the minimal left contexts that keep its peak activations."""

    name: ClassVar[str] = "ngram_pattern"

    def __init__(self, config: NgramConfig | None = None) -> None:
        self.config = config or NgramConfig()

    def _patterns(self, examples: FeatureExamples, scale: Scale) -> list[Pattern]:
        """Patterns, most activation covered first."""
        cfg = self.config
        feature_max, floor = scale
        peaks = [(c, _peak(c)) for c in examples.explain if c.acts]
        peaks = [(c, at) for c, at in peaks if c.acts[at] > floor]
        # Only the n-grams that end on a peak can become patterns: count just those.
        stats = _occurrences(examples.explain, {_left_context(c, at, n) for c, at in peaks for n in _lengths(at, cfg)})
        found: set[tuple[str, ...]] = set()
        for context, at in peaks:
            for n in _lengths(at, cfg):
                gram = _left_context(context, at, n)
                if stats[gram].mean >= cfg.keep * context.acts[at]:
                    found.add(gram)
                    break
        ranked = sorted(found, key=lambda g: (-stats[g].total, len(g), g))[: cfg.max_patterns]
        return [Pattern(g, relative_weight(stats[g].mean, feature_max)) for g in ranked]


def _peak(context: Context) -> int:
    """Position of the context's max activation (the first, on a tie)."""
    return max(range(len(context.acts)), key=context.acts.__getitem__)


def _lengths(at: int, cfg: NgramConfig) -> range:
    """The n-gram lengths to try at position ``at``, shortest first (no further left than the window)."""
    return range(1, min(cfg.max_n, at + 1) + 1)


def _left_context(context: Context, at: int, n: int) -> tuple[str, ...]:
    return context.tokens[at - n + 1 : at + 1]


def _occurrences(contexts: Sequence[Context], grams: set[tuple[str, ...]]) -> dict[tuple[str, ...], _Occurrences]:
    """For each n-gram, the activation on its last token summed and counted over its occurrences."""
    lengths_by_last: dict[str, set[int]] = defaultdict(set)
    for gram in grams:
        lengths_by_last[gram[-1]].add(len(gram))
    totals: dict[tuple[str, ...], float] = defaultdict(float)
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for context in contexts:
        tokens, acts = context.tokens, context.acts
        for end, token in enumerate(tokens):
            for n in lengths_by_last.get(token, ()):
                gram = tokens[end - n + 1 : end + 1] if n <= end + 1 else ()
                if gram in grams:
                    totals[gram] += acts[end]
                    counts[gram] += 1
    return {gram: _Occurrences(totals[gram], counts[gram]) for gram in grams}
