"""Repetition in generated text: the check that perplexity cannot make.

Perplexity rewards text that is easy to predict, and nothing is easier to predict than a
loop. Steering math feature #949 at 8x its typical maximum turns "Yesterday, when I got home,"
into ``= = = = = = ...`` and the continuation's perplexity *falls* to 0.48x the baseline's
(issue 22). So the sweep measures repetition beside perplexity:

* ``distinct_n``: the share of a continuation's n-grams (of token ids) that are distinct
  (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models").
  Fluent text of a few dozen tokens sits near 1; a loop of one token pair sits near 2/len.
* ``repeated_ngram_share``: the share of its n-grams that already occurred earlier in the
  same text. Every distinct n-gram occurs a first time and every other occurrence is a
  repeat, so this is exactly ``1 - distinct_n``: one measure, read either way.
* :class:`RepetitionRule`: an arm whose mean distinct-n falls below ``min_ratio`` times the
  unsteered baseline's is *degenerate* and does not qualify, whatever its perplexity. The
  rule is relative because a prompt's own text sets how much repetition is normal (a list or
  a table repeats more than prose).

Token ids, not words: the measure needs no tokenizer and sees ``" ="`` loops that a word
splitter would call one word repeated. Pass each continuation's own tokens, without pads.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from saelab._util.config import JsonConfig

TokenIds = Sequence[Hashable] | Tensor
"""One text's token ids: a list, or a 1-D tensor (any hashable items work, e.g. words)."""


def _ngrams(ids: TokenIds, n: int) -> list[tuple[Hashable, ...]]:
    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    items = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def distinct_n(ids: TokenIds, n: int = 2) -> float:
    """Distinct n-grams / n-grams of one text's token ids; NaN when it has fewer than ``n``
    tokens (no n-gram, so nothing to judge)."""
    grams = _ngrams(ids, n)
    return len(set(grams)) / len(grams) if grams else math.nan


def repeated_ngram_share(ids: TokenIds, n: int = 2) -> float:
    """Share of the n-grams that already occurred earlier in the text, ``1 - distinct_n``;
    NaN when it has fewer than ``n`` tokens."""
    return 1.0 - distinct_n(ids, n)


@dataclass(frozen=True)
class RepetitionScores:
    """Per continuation (NaN where a continuation has fewer than ``n`` tokens)."""

    distinct: Float[Tensor, " n_texts"]
    """Distinct n-grams / n-grams, in (0, 1]."""
    repeated: Float[Tensor, " n_texts"]
    """Share of n-grams seen earlier in the same text, ``1 - distinct``."""
    n_tokens: Int[Tensor, " n_texts"]
    n: int
    """The n-gram length."""

    @property
    def mean_distinct(self) -> float:
        """Mean distinct-n over the continuations that have one (NaN when none has)."""
        defined = self.distinct[~self.distinct.isnan()]
        return defined.mean().item() if defined.numel() else math.nan


def repetition_scores(continuations: Sequence[TokenIds], n: int = 2) -> RepetitionScores:
    """Distinct-n and repeated n-gram share of each continuation's token ids."""
    if isinstance(continuations, str) or any(isinstance(c, str) for c in continuations):
        raise TypeError("continuations must be token id lists, one per continuation, not strings")
    distinct = torch.tensor([distinct_n(c, n) for c in continuations], dtype=torch.float64)
    n_tokens = torch.tensor([len(c) for c in continuations], dtype=torch.long)
    return RepetitionScores(distinct=distinct, repeated=1.0 - distinct, n_tokens=n_tokens, n=int(n))


@dataclass(frozen=True)
class RepetitionRule(JsonConfig):
    """When a steering arm's text counts as degenerate: its mean distinct-n below
    ``min_ratio`` times the unsteered baseline's on the same prompts."""

    n: int = 2
    """The n-gram length. 2 catches a loop of one token pair (``" = = ="``) and of a phrase
    alike, and is defined from two tokens on."""
    min_ratio: float = 0.5
    """An arm passes while its mean distinct-n is at least this share of the baseline's (issue
    22's "below half the baseline's")."""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            problems.append(f"n must be an integer >= 1, got {self.n!r}")
        if not 0.0 < self.min_ratio <= 1.0:
            problems.append(f"min_ratio must be in (0, 1], got {self.min_ratio!r}")
        self.raise_problems(problems)

    def scores(self, continuations: Sequence[TokenIds]) -> RepetitionScores:
        """:func:`repetition_scores` at this rule's ``n``."""
        return repetition_scores(continuations, self.n)

    def ratio(self, arm_distinct: float, baseline_distinct: float) -> float:
        """The arm's mean distinct-n over the baseline's; NaN when the arm has none.

        A baseline without a distinct-n (NaN: every baseline continuation shorter than ``n``)
        or with 0 (impossible for a real distinct-n, which is at least 1/len) raises: the
        reference is broken, and no arm can be judged against it."""
        for name, value in (("arm_distinct", arm_distinct), ("baseline_distinct", baseline_distinct)):
            if not (math.isnan(value) or 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a distinct-n in [0, 1] or NaN, got {value!r}")
        if math.isnan(baseline_distinct) or baseline_distinct == 0.0:
            raise ValueError(
                f"The baseline's distinct-{self.n} is {baseline_distinct}: its continuations need at least "
                f"{self.n} tokens each (generate more tokens), and a real distinct-n is never 0."
            )
        return arm_distinct / baseline_distinct

    def degenerate(self, arm_distinct: float, baseline_distinct: float) -> bool:
        """Whether the arm's text is degenerate against the baseline's.

        An arm with no distinct-n (NaN: every continuation shorter than ``n`` tokens, e.g. it
        ends at once) counts as degenerate: the check must see text to pass it."""
        ratio = self.ratio(arm_distinct, baseline_distinct)
        return math.isnan(ratio) or ratio < self.min_ratio
