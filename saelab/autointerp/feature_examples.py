"""What an explainer and a scorer see of a feature: short token windows with this feature's
activation on every token, split into a part to explain from and a disjoint part to score on.

Shapes: a context is ``window`` tokens long (fewer at the end of a text); ``acts[i]`` is the
feature's activation on ``tokens[i]``. ``source = (sequence, start)`` names the window in the
corpus, so two contexts are the same window exactly when their sources are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Context:
    """One short window of text and this feature's activation on each of its tokens."""

    tokens: tuple[str, ...]
    """Token strings as the tokenizer decodes them one by one (leading spaces kept)."""
    token_ids: tuple[int, ...]
    acts: tuple[float, ...]
    """This feature's activation per token; 0 on positions that are never encoded (BOS, pads)."""
    source: tuple[int, int]
    """(sequence index in the corpus, first position of the window): the window's identity."""

    def __post_init__(self) -> None:
        if not (len(self.tokens) == len(self.token_ids) == len(self.acts)):
            raise ValueError(
                f"A context needs one token id and one activation per token; got {len(self.tokens)} tokens, "
                f"{len(self.token_ids)} ids and {len(self.acts)} activations."
            )

    @property
    def max_act(self) -> float:
        return max(self.acts, default=0.0)

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def activations(self) -> np.ndarray:
        return np.asarray(self.acts, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "token_ids": list(self.token_ids),
            "acts": [round(float(a), 5) for a in self.acts],
            "source": list(self.source),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Context:
        return cls(
            tuple(data["tokens"]),
            tuple(int(t) for t in data["token_ids"]),
            tuple(float(a) for a in data["acts"]),
            (int(data["source"][0]), int(data["source"][1])),
        )


@dataclass(frozen=True)
class FeatureExamples:
    """A feature's contexts, split for explaining and for scoring (never the same window).

    ``explain`` holds the top-activating windows, strongest first: the only contexts an
    explainer may look at. ``positives`` are other activating windows sampled across the
    feature's activation quantiles, ``negatives`` windows sampled at random among those where
    it does not fire, ``hard_negatives`` windows where a co-occurring or decoder-similar
    feature fires strongly but this one does not. Scorers use those three only.
    """

    feature: int
    decomposition: str
    """Which set of directions the feature belongs to (an SAE's id, "neurons", "pca", ...)."""
    threshold: float
    """The feature fires on a token when its activation is above this (0 for an SAE)."""
    frequency: float
    """Share of the pass's tokens on which it fires."""
    max_activation: float
    explain: tuple[Context, ...] = ()
    positives: tuple[Context, ...] = ()
    negatives: tuple[Context, ...] = ()
    hard_negatives: tuple[Context, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        held_in = {c.source for c in self.explain}
        held_out = [c.source for c in (*self.positives, *self.negatives, *self.hard_negatives)]
        if held_in.intersection(held_out):
            raise ValueError(f"Feature {self.feature}: a window is in both the explain and the scoring split.")

    @property
    def fires(self) -> bool:
        """False for a feature that never fired in the pass: there is nothing to explain."""
        return bool(self.explain)

    def scoring_contexts(self, hard: bool = False) -> tuple[list[Context], np.ndarray]:
        """The scoring split as (contexts, labels): 1 for activating, 0 for non-activating."""
        negatives = [*self.negatives, *self.hard_negatives] if hard else list(self.negatives)
        contexts = [*self.positives, *negatives]
        labels = np.array([1] * len(self.positives) + [0] * len(negatives), dtype=np.int64)
        return contexts, labels

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "feature": self.feature,
            "decomposition": self.decomposition,
            "threshold": self.threshold,
            "frequency": self.frequency,
            "max_activation": self.max_activation,
            "extra": self.extra,
        }
        for name in ("explain", "positives", "negatives", "hard_negatives"):
            out[name] = [c.to_dict() for c in getattr(self, name)]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureExamples:
        splits = {
            name: tuple(Context.from_dict(c) for c in data.get(name, []))
            for name in ("explain", "positives", "negatives", "hard_negatives")
        }
        return cls(
            int(data["feature"]),
            str(data["decomposition"]),
            float(data["threshold"]),
            float(data["frequency"]),
            float(data["max_activation"]),
            extra=dict(data.get("extra", {})),
            **splits,
        )
