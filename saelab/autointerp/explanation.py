"""An explanation: a short text about a feature, from one explainer.

Explanations that an LLM-free explainer writes are *simulatable*: their text lists token
patterns with weights in one fixed format (see :mod:`saelab.autointerp.patterns`), so the text
alone predicts per-token activations. That is what lets a shuffled explanation (another
feature's) be scored by the simulation scorer exactly like the real one.
"""

from __future__ import annotations

from dataclasses import dataclass

NEVER_FIRES = "never fires in the pass"
"""The ``skipped`` reason of an explainer for a feature with no activating context."""


@dataclass(frozen=True)
class Explanation:
    feature: int
    explainer: str
    """"top_tokens", "ngram_pattern", "llm", or a user-supplied name."""
    text: str
    """The explanation itself; empty when the feature never fired (``skipped`` says why)."""
    skipped: str = ""
    """Why there is no explanation ("never fires in the pass"), or "" when there is one."""

    @property
    def ok(self) -> bool:
        return not self.skipped and bool(self.text.strip())
