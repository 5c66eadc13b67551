"""A small, fully populated :class:`SaeDashboard` made by hand (no model, no SAE): for the
report and site tests, which check formats and pages, not the numbers' provenance."""

from __future__ import annotations

import numpy as np

from saelab.autointerp.feature_examples import Context
from saelab.dashboards.config import DashboardConfig
from saelab.dashboards.data import (
    ExplanationScore,
    FeatureDashboard,
    Histogram,
    Match,
    Neighbour,
    QuantileGroup,
    SaeDashboard,
    SaeInfo,
    SpecialistHit,
    TokenValue,
)

WORDS = [" the", " cat", " def", " return", " http", "://", " x", " =", " 1", "\n", " café", " <b>", " \"q\""]


def _context(rng: np.random.Generator, seq: int, peak: float, width: int = 12) -> Context:
    ids = rng.integers(0, len(WORDS), size=width)
    acts = np.where(rng.random(width) < 0.3, rng.random(width) * peak, 0.0)
    acts[int(rng.integers(0, width))] = peak
    return Context(tuple(WORDS[i] for i in ids), tuple(int(i) for i in ids), tuple(float(a) for a in acts),
                   (seq, 0))  # fmt: skip


def sample_feature(feature: int, d_sae: int, rng: np.random.Generator, *, fires: bool = True,
                   explained: bool = True, hooks: tuple[str, ...] = ()) -> FeatureDashboard:  # fmt: skip
    if not fires:
        return FeatureDashboard(feature, 0.0, 0, 0.0, 0.0, 0.0)
    peak = float(rng.uniform(1, 10))
    top = tuple(_context(rng, 1000 * feature + i, peak * (1 - i / 20)) for i in range(6))
    groups = tuple(
        QuantileGroup(peak * q / 3, peak * (q + 1) / 3, 1 / 3,
                      tuple(_context(rng, 1000 * feature + 100 + 10 * q + i, peak * (q + 0.5) / 3) for i in range(2)))
        for q in range(3)
    )  # fmt: skip
    edges = tuple(float(x) for x in np.linspace(0, peak, 11))
    others = [int(x) for x in rng.choice([i for i in range(d_sae) if i != feature], size=3, replace=False)]
    return FeatureDashboard(
        feature=feature, density=float(rng.uniform(1e-4, 0.05)), n_fired=int(rng.integers(1, 500)),
        max_activation=peak, mean_activation=peak / 3, steering_unit=peak * 0.9, top=top, quantiles=groups,
        histogram=Histogram(edges, tuple(int(c) for c in rng.integers(0, 50, size=10))),
        logit_histogram=Histogram(tuple(float(x) for x in np.linspace(-1, 1, 6)), (3, 10, 40, 10, 2)),
        promoted=tuple(TokenValue(WORDS[i], i, 1.0 - 0.1 * i) for i in range(4)),
        suppressed=tuple(TokenValue(WORDS[-1 - i], len(WORDS) - 1 - i, -1.0 + 0.1 * i) for i in range(4)),
        decoder_neighbours=tuple(Neighbour(o, 0.5 - 0.1 * j) for j, o in enumerate(others)),
        coactivating=tuple(Neighbour(o, 0.2 - 0.05 * j, 0.4 - 0.1 * j) for j, o in enumerate(others)),
        explanations=(ExplanationScore("top_tokens", f"tokens like{WORDS[feature % len(WORDS)]}",
                                       {"simulation": 0.6}, {"simulation": 0.1}),) if explained else (),
        specialist=(SpecialistHit("code", 0.93, 0.001, True),) if feature % 2 == 0 else (),
        matches=tuple(Match(h, int(rng.integers(0, d_sae)), 0.8, True) for h in hooks),
        map_xy=(float(rng.normal()), float(rng.normal())),
    )  # fmt: skip


def sample_dashboard(d_sae: int = 12, hook: str = "blocks.20.hook_resid_pre", *, explained: bool = True,
                     other_hooks: tuple[str, ...] = ("blocks.15.hook_resid_pre",),
                     seed: int = 0) -> SaeDashboard:  # fmt: skip
    """``d_sae`` features: feature 3 never fires, odd ones are no specialists."""
    rng = np.random.default_rng(seed)
    info = SaeInfo(model="smollm2-135m", hook=hook, release="saelab-smollm2-135m-suite", sae_id=hook, d_sae=d_sae,
                   d_in=576, architecture="topk", source="store 0123456789abcdef held_out", n_tokens=10_000,
                   neuronpedia_id=None, other_hooks=other_hooks)  # fmt: skip
    features = {f: sample_feature(f, d_sae, rng, fires=f != 3, explained=explained, hooks=other_hooks)
                for f in range(d_sae)}  # fmt: skip
    summary = {"l0": 32.0, "explained_variance": 0.94, "ce_loss_recovered": 0.96, "dead_fraction": 1 / d_sae,
               "dense_fraction": 0.0, "n_tokens": 10_000,
               "specialists": [{"category": "code", "feature": 0, "auroc": 0.93, "q_value": 0.001,
                                "is_specialist": True}],
               "explanation_scores": [{"explainer": "top_tokens", "metric": "simulation", "median": 0.6,
                                       "median_shuffled": 0.1}]}  # fmt: skip
    return SaeDashboard(info, DashboardConfig(), summary, features, map_method="umap")
