"""What the LLM explainer and the LLM scorers need from a language model, whichever serves it.

A backend answers chat prompts. Two operations:
- ``complete``: generate a reply (the explainer);
- ``yes_probability``: P(yes) / (P(yes) + P(no)) of the reply's *first* token, read from the
  model's log-probabilities, never parsed from generated text (delphi's detection and
  fuzzing scorers; Bills et al.'s simulator reads probabilities the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypedDict, runtime_checkable

import numpy as np


class Message(TypedDict):
    role: str
    """"system", "user" or "assistant"."""
    content: str


Chat = Sequence[Message]


@runtime_checkable
class Backend(Protocol):
    """A chat model behind a uniform interface (the embedded model, or an HTTP endpoint)."""

    name: str
    """Shown in records and figures: which model explained or scored."""

    def complete(
        self, chats: Sequence[Chat], *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """One reply per chat (greedy when ``temperature`` is 0)."""
        ...

    def yes_probability(self, chats: Sequence[Chat]) -> np.ndarray:
        """Float array ``[len(chats)]``: P(yes) / (P(yes) + P(no)) for the first reply token,
        summing over the token variants of each word ("Yes", " yes", "YES", ...)."""
        ...
