"""Features of two models matched by activation correlation on shared word spans.

The correlation and its null are :mod:`saelab.evolution`'s: Pearson correlation over the
spans, and a good match is one at least the 99th percentile of the same correlations with the
second model's spans shuffled (an independent shuffle measures how often the null passes).
A feature that never fires on the sample cannot correlate with anything, so shares are given
over all features and over those active on at least ``min_active`` spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from saelab._util.hook_names import hook_layer
from saelab.crossmodel.spans import SpanSample
from saelab.evolution.matching import FeatureMatches, activation_similarities, matches_from


def relative_depth(hook: str, n_layers: int) -> float:
    """A residual hook's depth as a fraction of the model: ``blocks.L.hook_resid_pre`` -> L / n_layers."""
    layer = hook_layer(hook)
    if layer is None:
        raise ValueError(f"{hook!r} names no layer; relative depth needs a blocks.<L>.* hook")
    if not 0 < n_layers or layer > n_layers:
        raise ValueError(f"{hook!r} is not in a model of {n_layers} layers")
    return layer / n_layers


@dataclass
class CrossModelMatches:
    """Every hook of one model matched against every hook of the other."""

    grid: pd.DataFrame
    """One row per (hook_a, hook_b): ``depth_a, depth_b, n_a, active_a, matched_share,
    matched_share_active, matched_share_b_active`` (B's active features with a good match in
    A, looking back), ``null_rate, threshold, median_best`` (of A's active features),
    ``null_rate_b`` (how often B's features pass the threshold under the null), ``n_spans``."""
    matches: dict[tuple[str, str], FeatureMatches]
    model_a: str
    model_b: str

    def share_matrix(self, value: str = "matched_share_active") -> pd.DataFrame:
        """``hook_a x hook_b`` table of one grid column (for the heatmap)."""
        return self.grid.pivot(index="hook_a", columns="hook_b", values=value).loc[
            list(dict.fromkeys(self.grid["hook_a"])), list(dict.fromkeys(self.grid["hook_b"]))
        ]


def match_models(
    sample: SpanSample,
    depths: Mapping[str, Mapping[str, float]],
    *,
    min_active: int = 5,
    null_quantile: float = 0.99,
    seed: int = 0,
) -> CrossModelMatches:
    """Match the first model's features (A) to the second's (B), every hook pair.

    ``depths``: ``{model: {hook: relative depth}}`` for both models of ``sample`` (their
    hooks, in order).
    """
    names = list(sample.features)
    if len(names) != 2 or set(depths) != set(names):
        raise ValueError(f"depths must name the sample's two models {names}; got {list(depths)}")
    if sample.n_spans < 2:
        raise ValueError(f"The span sample has {sample.n_spans} spans; correlations need more ({sample.describe()})")
    if min_active < 1:
        raise ValueError(f"min_active must be >= 1, got {min_active}")
    (a, b), rows, matches = names, [], {}
    active_b = {hook: _active(acts, min_active) for hook, acts in sample.features[b].items()}
    for hook_a, acts_a in sample.features[a].items():
        active = _active(acts_a, min_active)
        for hook_b, acts_b in sample.features[b].items():
            sims = activation_similarities([(acts_a, acts_b)], seed=seed)
            found = matches_from(sims, null_quantile=null_quantile, top=1)
            rows.append({
                "hook_a": hook_a, "hook_b": hook_b, "depth_a": depths[a][hook_a], "depth_b": depths[b][hook_b],
                **_shares(found, active, active_b[hook_b]),
                # B looking back at A under the same threshold: its own null rate.
                "null_rate_b": float((sims.null_check.max(axis=0) >= found.threshold).mean()),
                "n_spans": sample.n_spans,
            })  # fmt: skip
            matches[(hook_a, hook_b)] = found
    return CrossModelMatches(pd.DataFrame(rows), matches, a, b)


def _shares(found: FeatureMatches, active_a: np.ndarray, active_b: np.ndarray) -> dict[str, float | int]:
    """Matched shares of A's features (all, active) and of B's active ones, the null beside them."""
    matched = found.best["matched"].to_numpy(bool)
    matched_b = found.best_b["matched"].to_numpy(bool)
    best = found.best["similarity"].to_numpy(float)
    share = lambda flags, keep: float(flags[keep].mean()) if keep.any() else float("nan")  # noqa: E731
    return {
        "n_a": len(matched), "active_a": int(active_a.sum()), "matched_share": float(matched.mean()),
        "matched_share_active": share(matched, active_a), "matched_share_b_active": share(matched_b, active_b),
        "null_rate": found.null_rate, "threshold": found.threshold,
        "median_best": float(np.median(best[active_a])) if active_a.any() else float("nan"),
    }  # fmt: skip


def _active(acts: sp.csr_matrix, min_active: int) -> np.ndarray:
    """Features non-zero on at least ``min_active`` rows."""
    return np.diff(sp.csc_matrix(acts).indptr) >= min_active  # stored entries per column (no explicit zeros)


def matched_pairs(matches: FeatureMatches) -> pd.DataFrame:
    """One-to-one pairs from good matches: each A feature's best B feature, and where several
    A features share one B feature, only the most similar (``feature_a, feature_b, similarity``)."""
    best = matches.best
    keep = best["matched"].to_numpy(bool)
    pairs = pd.DataFrame({"feature_a": np.asarray(best.index)[keep], "feature_b": best["best_match"].to_numpy()[keep],
                          "similarity": best["similarity"].to_numpy()[keep]})  # fmt: skip
    pairs = pairs.sort_values("similarity", ascending=False, kind="stable").drop_duplicates("feature_b")
    return pairs.sort_values("feature_a").reset_index(drop=True)
