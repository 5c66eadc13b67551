"""How a context becomes prompt text: the window shown around its peak, its tokens on one line,
and the tokens where the feature fires marked ``<<like this>>``.

The LLM explainer shows its model these texts, and the detection and fuzzing scorers show
their judge the same ones, so explainer and judge read a context the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Bool, Float

from saelab.autointerp.feature_examples import Context

MARK_OPEN, MARK_CLOSE = "<<", ">>"

# Special-token strings (BOS "<|im_start|>", "<|endoftext|>") inside a context would be read
# as control tokens by the chat template's tokenizer; they carry no text, so they are not shown.
_SPECIAL = re.compile(r"^<\|[^|]*\|>$")


class ShownWindow(NamedTuple):
    """The part of a context a prompt shows."""

    tokens: tuple[str, ...]
    acts: Float[np.ndarray, " n_shown"]
    """The feature's activation on each shown token."""


def peak_window(acts: Float[np.ndarray, " n_tokens"], max_tokens: int) -> slice:
    """The at most ``max_tokens`` positions shown of a context: mostly what precedes the peak
    (a causal model's activation depends on the prefix), the rest after it."""
    n = len(acts)
    if n <= max_tokens:
        return slice(0, n)
    peak = int(np.argmax(acts))
    start = min(max(0, peak - (3 * max_tokens) // 4), n - max_tokens)
    return slice(start, start + max_tokens)


def shown_window(context: Context, max_tokens: int) -> ShownWindow:
    """A context's tokens and activations cut to :func:`peak_window`."""
    acts = context.activations()
    window = peak_window(acts, max_tokens)
    return ShownWindow(context.tokens[window], acts[window])


def firing_marks(
    acts: Float[np.ndarray, " n_tokens"], fraction: float, threshold: float = 0.0
) -> Bool[np.ndarray, " n_tokens"]:
    """The tokens to mark: above ``threshold`` and above ``fraction`` of the window's peak
    (none when nothing is above 0), so a weak echo of the peak stays unmarked."""
    peak = float(acts.max(initial=0.0))
    return (acts > threshold) & (acts > fraction * peak)


def shown_token(token: str) -> str:
    """A token as a prompt shows it: newlines escaped so each context stays on one line."""
    if _SPECIAL.match(token):
        return ""
    return token.replace("\r", "\\r").replace("\n", "\\n")


def plain_text(tokens: Sequence[str]) -> str:
    """The tokens as one line of text, nothing marked."""
    return "".join(shown_token(t) for t in tokens).strip()


def marked_text(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    """The tokens as one line with each run of marked tokens wrapped ``<<like this>>``.

    A run's leading whitespace stays outside the marks (``the <<cat>>``, not ``the<< cat>>``),
    as in delphi's prompts, so the marked span reads as the word itself.
    """
    if len(tokens) != len(marked):
        raise ValueError(f"{len(tokens)} tokens but {len(marked)} marks")
    out: list[str] = []
    run: list[str] = []
    for token, mark in zip([*tokens, ""], [*marked, False], strict=True):
        if mark:
            run.append(shown_token(token))
            continue
        if run:
            span = "".join(run)
            body = span.lstrip() or span
            out.append(span[: len(span) - len(body)] + MARK_OPEN + body + MARK_CLOSE)
            run = []
        out.append(shown_token(token))
    return "".join(out).strip()
