"""The baseline explainer: the tokens (and two-token sequences) a feature fires on most often.

Over the explain contexts, a position *fires* when its activation is above the feature's
threshold and at least ``min_fraction`` of its context's peak: the fraction keeps the faint
tail of a window (activations a few percent of the peak) from outvoting the tokens the window
was chosen for. Each firing position is covered by its token (a unigram) and by the bigram
that ends there. Candidates are kept in order of how many firing positions they cover, up to
``max_patterns``, each weighted by its mean activation over those positions relative to the
feature's max over the explain contexts.

A bigram always covers at most what its last token covers, and under longest-match simulation
(``patterns.simulate``) it overrides that token only after its first token. So a bigram is kept
only when it changes a prediction: when its token is not kept, or when their weights differ by
at least ``min_weight_gap``. Counting only where the feature fires, this explainer cannot see
where a token occurs *without* firing; ``ngram.NgramPatternExplainer`` can.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from saelab._util.config import JsonConfig
from saelab.autointerp.explainers.base import PatternExplainer, Scale
from saelab.autointerp.feature_examples import FeatureExamples
from saelab.autointerp.patterns import Pattern, relative_weight


@dataclass(frozen=True, kw_only=True)
class TopTokensConfig(JsonConfig):
    max_patterns: int = 5
    """How many patterns the explanation lists at most."""
    min_fraction: float = 0.2
    """A position fires when its activation is at least this share of its context's peak
    (and above the feature's threshold)."""
    min_bigram_count: int = 2
    """A bigram must cover at least this many firing positions: one occurrence is chance."""
    min_bigram_share: float = 0.1
    """A bigram must also cover at least this share of its last token's firing positions: a
    token that fires after many different ones repeats some of them by chance (with a
    60-token filler vocabulary, 2 of 60 planted firings came after the same filler token)."""
    min_weight_gap: float = 0.1
    """A bigram is kept beside its own last token only when their weights differ by this much."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_patterns < 1:
            problems.append(f"max_patterns must be at least 1, got {self.max_patterns}")
        if not 0 <= self.min_fraction <= 1:
            problems.append(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        if self.min_bigram_count < 1:
            problems.append(f"min_bigram_count must be at least 1, got {self.min_bigram_count}")
        if not 0 <= self.min_bigram_share <= 1:
            problems.append(f"min_bigram_share must be in [0, 1], got {self.min_bigram_share}")
        if not 0 <= self.min_weight_gap <= 1:
            problems.append(f"min_weight_gap must be in [0, 1], got {self.min_weight_gap}")
        self.raise_problems(problems)


class _Candidate(NamedTuple):
    tokens: tuple[str, ...]
    count: int
    """Firing positions this unigram or bigram covers."""
    weight: float


class TopTokensExplainer(PatternExplainer):
    """Explains a feature by the most frequent tokens and bigrams at its firing positions."""

    name: ClassVar[str] = "top_tokens"

    def __init__(self, config: TopTokensConfig | None = None) -> None:
        self.config = config or TopTokensConfig()

    def _patterns(self, examples: FeatureExamples, scale: Scale) -> list[Pattern]:
        """Patterns, strongest coverage first."""
        cfg = self.config
        feature_max, floor = scale
        sums: dict[tuple[str, ...], float] = defaultdict(float)
        counts: dict[tuple[str, ...], int] = defaultdict(int)
        for context in examples.explain:
            cut = cfg.min_fraction * context.max_act
            for i, (token, act) in enumerate(zip(context.tokens, context.acts, strict=True)):
                if act > floor and act >= cut:
                    keys = [(token,)] + ([(context.tokens[i - 1], token)] if i > 0 else [])
                    for key in keys:
                        sums[key] += act
                        counts[key] += 1
        candidates = [
            _Candidate(key, n, relative_weight(sums[key] / n, feature_max))
            for key, n in counts.items()
            if len(key) == 1 or (n >= cfg.min_bigram_count and n >= cfg.min_bigram_share * counts[key[-1:]])
        ]
        # Most coverage first; on a tie the unigram first, so a bigram meets its token already kept.
        candidates.sort(key=lambda c: (-c.count, len(c.tokens), -c.weight, c.tokens))
        kept: dict[tuple[str, ...], float] = {}
        for c in candidates:
            if len(kept) == cfg.max_patterns:
                break
            unigram = c.tokens[-1:]
            if len(c.tokens) == 2 and unigram in kept and round(abs(kept[unigram] - c.weight), 6) < cfg.min_weight_gap:
                continue
            kept[c.tokens] = c.weight
        return [Pattern(tokens, weight) for tokens, weight in kept.items()]
