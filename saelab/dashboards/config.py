"""What a dashboard keeps per feature, and how many of each kind."""

from __future__ import annotations

from dataclasses import dataclass

from saelab._util.config import JsonConfig
from saelab.autointerp.config import ExamplesConfig


@dataclass(frozen=True)
class DashboardConfig(JsonConfig):
    """Sizes of every part of a feature's dashboard. The defaults follow SAEDashboard's
    layout (top activations, quantile groups, a histogram, logit tables) with smaller groups:
    the suite's four SAEs then fit the size goal of the reports and the site."""

    n_top: int = 20
    """Top-activating windows shown per feature (strongest first)."""
    n_quantile_groups: int = 5
    """Groups of activating windows, each an equal share of the feature's activating windows
    ordered by peak activation (SAEDashboard's "intervals", by count instead of value)."""
    per_group: int = 5
    """Windows shown per quantile group."""
    reservoir: int = 64
    """Activating windows sampled uniformly per feature to draw the quantile groups from."""
    window: int = 32
    """Tokens per window: sequences are cut into consecutive windows of this length."""
    n_histogram_bins: int = 40
    """Bars of the activation histogram (over the tokens where the feature fires)."""
    n_logits: int = 10
    """Tokens in each logit table (promoted and suppressed)."""
    n_neighbours: int = 10
    """Features listed by decoder cosine and by co-activation."""
    n_logit_histogram_bins: int = 40
    """Bars of the histogram of the feature's direct logit effect over the vocabulary."""
    steering_top: int = 10
    """The steering unit is the mean peak of the feature's this many strongest windows."""
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_top", "n_quantile_groups", "per_group", "reservoir", "window", "n_histogram_bins",
                     "n_logits", "n_neighbours", "n_logit_histogram_bins", "steering_top"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.reservoir < self.n_quantile_groups:
            problems.append(f"reservoir ({self.reservoir}) must be at least n_quantile_groups "
                            f"({self.n_quantile_groups})")  # fmt: skip
        self.raise_problems(problems)

    def examples_config(self) -> ExamplesConfig:
        """The examples pass's config: its top windows are the dashboard's top windows and its
        uniform sample of activating windows feeds the quantile groups."""
        return ExamplesConfig(window=self.window, n_explain=self.n_top, reservoir=self.reservoir, seed=self.seed)
