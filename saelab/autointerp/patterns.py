"""The one text format for token-pattern explanations, and what such a text predicts.

An LLM-free explainer writes its explanation as a list of token patterns with weights::

    fires on: " def" (1.00); " import" " numpy" (0.62); "\\n" "#" (0.31)

Each pattern is a contiguous token sequence whose *last* token is where the feature fires;
the weight in parentheses is its typical activation there as a share of the feature's max.
Token strings are JSON-quoted, so leading spaces, quotes, backslashes, newlines, semicolons
and parentheses inside a token survive; non-ASCII is written as is, so a human (or an LLM)
reads it. The fixed prefix lets :func:`parse_patterns` tell this format from free text.

Because the text alone predicts an activation per token (:func:`simulate`), any explanation
in this format can be scored by simulation, another feature's (a shuffled control) included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

PREFIX = "fires on:"
"""Every explanation in this format starts with this."""
NOTHING = "nothing"
"""What follows the prefix when there is no pattern (an explanation that predicts no firing)."""

_WEIGHT = re.compile(r"\(\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\)")
_JSON = json.JSONDecoder()


@dataclass(frozen=True)
class Pattern:
    """A contiguous token sequence; the feature fires on its last token with activation
    about ``weight`` times its max."""

    tokens: tuple[str, ...]
    """Token strings as the tokenizer decodes them one by one (leading spaces kept)."""
    weight: float
    """Typical activation on the last token relative to the feature's max, in (0, 1]."""

    def __post_init__(self) -> None:
        tokens = tuple(self.tokens)
        if not tokens or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"A pattern needs one or more token strings, got {self.tokens!r}")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and 0 < self.weight <= 1):
            raise ValueError(f"A pattern's weight must be in (0, 1], got {self.weight!r}")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "weight", float(self.weight))


def format_patterns(patterns: Sequence[Pattern]) -> str:
    """The explanation text for ``patterns``, in order; :func:`parse_patterns` reads it back exactly.

    A weight prints with two decimals when that is exact (explainers round to two decimals,
    so their texts read ``(0.62)``), and in full otherwise, so the round trip never loses it.
    """
    if not patterns:
        return f"{PREFIX} {NOTHING}"
    parts = []
    for p in patterns:
        quoted = " ".join(json.dumps(t, ensure_ascii=False) for t in p.tokens)
        short = f"{p.weight:.2f}"
        parts.append(f"{quoted} ({short if float(short) == p.weight else repr(p.weight)})")
    return f"{PREFIX} " + "; ".join(parts)


def parse_patterns(text: str) -> list[Pattern] | None:
    """The patterns an explanation text lists, or None when the text is not in this format
    (free text, such as an LLM's explanation, or a malformed list). ``[]`` for "nothing"."""
    text = text.strip()
    if not text.startswith(PREFIX):
        return None
    body = text[len(PREFIX) :].strip()
    if body == NOTHING:
        return []
    patterns: list[Pattern] = []
    at = 0
    while True:
        parsed = _parse_one(body, at)
        if parsed is None:
            return None
        pattern, at = parsed
        patterns.append(pattern)
        at = _skip_space(body, at)
        if at == len(body):
            return patterns
        if body[at] != ";":
            return None
        at += 1


def _parse_one(body: str, at: int) -> tuple[Pattern, int] | None:
    """One ``"tok" "tok" (weight)`` starting at ``at``: the pattern and where it ends, or None."""
    tokens: list[str] = []
    at = _skip_space(body, at)
    while at < len(body) and body[at] == '"':
        try:
            token, at = _JSON.raw_decode(body, at)
        except json.JSONDecodeError:
            return None
        tokens.append(token)
        at = _skip_space(body, at)
    weight = _WEIGHT.match(body, at)
    if not tokens or weight is None:
        return None
    value = float(weight.group(1))
    if not 0 < value <= 1:
        return None
    return Pattern(tuple(tokens), value), weight.end()


def _skip_space(body: str, at: int) -> int:
    while at < len(body) and body[at].isspace():
        at += 1
    return at


def simulate(patterns: Sequence[Pattern], tokens: Sequence[str]) -> Float[np.ndarray, " n_tokens"]:
    """Predicted activation (share of the feature's max) on each token of one text.

    A token gets the weight of the pattern whose token sequence ends exactly there, and 0
    where none does. When several match, the *longest* wins (then the larger weight): a
    longer pattern names a more specific context, so ``" New" " York" (0.9)`` overrides
    ``" York" (0.1)`` after " New", while " York" elsewhere keeps 0.1.
    """
    by_last: dict[str, list[Pattern]] = {}
    for p in sorted(patterns, key=lambda p: (-len(p.tokens), -p.weight)):
        by_last.setdefault(p.tokens[-1], []).append(p)
    out = np.zeros(len(tokens), dtype=np.float32)
    for i, token in enumerate(tokens):
        for p in by_last.get(token, ()):
            n = len(p.tokens)
            if n <= i + 1 and (n == 1 or tuple(tokens[i - n + 1 : i]) == p.tokens[:-1]):
                out[i] = p.weight
                break
    return out


def relative_weight(mean_activation: float, feature_max: float) -> float:
    """A pattern weight: ``mean_activation / feature_max`` rounded to two decimals, kept in
    [0.01, 1] so that a pattern that does fire never prints as weight 0."""
    if not feature_max > 0:
        raise ValueError(f"A feature's max activation must be positive to weight patterns, got {feature_max}")
    return min(1.0, max(0.01, round(mean_activation / feature_max, 2)))
