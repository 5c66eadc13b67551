"""What the steering sweep needs from an optional LLM judge of steered text.

The judge itself lives in ``saelab.autointerp`` (:class:`~saelab.autointerp.steering_judge.SteeringJudge`,
which talks to a chat backend); autointerp sits above interventions, so interventions sees it
only through this protocol, and any object with a matching ``rate`` serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd


@runtime_checkable
class ConceptJudge(Protocol):
    """Rates continuations for a concept, AxBench style (Wu et al. 2025)."""

    def rate(self, prompts: Sequence[str], continuations: Sequence[str], concept: str) -> pd.DataFrame:
        """One row per continuation, in order. At least a ``harmonic`` column in [0, 2], NaN
        where the judge gave no usable answer; ``concept`` names what the text should be about
        (a dataset category for :class:`SteeringJudge`)."""
        ...
