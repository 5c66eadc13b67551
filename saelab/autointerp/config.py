"""How the examples pass picks a feature's contexts, and how many of each kind."""

from __future__ import annotations

from dataclasses import dataclass

from saelab._util.config import JsonConfig


@dataclass(frozen=True)
class ExamplesConfig(JsonConfig):
    """Sizes of the explain and scoring splits and the rules that pick their windows."""

    window: int = 32
    """Tokens per context. Sequences are cut into consecutive windows of this length."""
    n_explain: int = 20
    """Top-activating windows an explainer sees (the explain split)."""
    n_positives: int = 10
    """Activating windows for scoring, sampled across the activation quantiles."""
    n_negatives: int = 10
    """Non-activating windows for scoring, sampled uniformly."""
    n_hard_negatives: int = 5
    """Non-activating windows where a co-occurring or decoder-similar feature fires strongly."""
    n_quantiles: int = 5
    """Activation quantile bins the positives are spread over (weak ones count too)."""
    reservoir: int = 64
    """Activating windows kept per feature (a uniform sample) to draw the positives from."""
    n_neighbours: int = 4
    """Neighbours per kind (co-occurrence, decoder similarity) whose firing makes a hard negative."""
    dense_rate: float = 0.01
    """A dense direction (neurons, PCA, ICA, random) fires on a token when it is in its top
    ``dense_rate`` of tokens; 1% is close to the suite SAEs' mean firing rate (k=32 of 4608).
    An SAE feature fires when it is above 0."""
    calibration_chunks: int = 4
    """Chunks, spread over the source, that set dense thresholds, signs and neighbours."""
    seed: int = 0
    checkpoint_every_s: float = 120.0
    """Seconds between checkpoints of an unfinished pass (resumed on the next call)."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("window", "n_explain", "n_positives", "n_negatives", "n_quantiles", "reservoir",
                     "calibration_chunks"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("n_hard_negatives", "n_neighbours"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not 0.0 < self.dense_rate < 0.5:
            problems.append(f"dense_rate must be in (0, 0.5), got {self.dense_rate}")
        if isinstance(self.reservoir, int) and isinstance(self.n_positives, int) and self.reservoir < self.n_positives:
            problems.append(f"reservoir ({self.reservoir}) must be at least n_positives ({self.n_positives})")
        self.raise_problems(problems)

    def content_dict(self) -> dict:
        """The fields that decide which examples come out (the cache key's share)."""
        out = self.to_dict()
        out.pop("checkpoint_every_s")
        return out
