"""Features of two models matched by activation correlation on shared word spans.

The correlation and its null are :mod:`saelab.evolution`'s: Pearson correlation over the
spans, and a good match is one at least the 99th percentile of the same correlations with the
second model's spans shuffled (an independent shuffle measures how often the null passes).
A feature that never fires on the sample cannot correlate with anything, so shares are given
over all features and over those active on at least ``min_active`` spans.

Shuffling spans destroys word identity too, so two features that both fire on one word match
without sharing anything beyond the word. A second null keeps it: B's spans are shuffled only
among spans of the same word, and each matched pair's correlation is measured again. A pair
that keeps it rests on word identity; one that loses most of it needs the context. (A word
seen once stays in place, so the measure leans towards "word identity".)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from saelab._util.hook_names import hook_layer
from saelab.crossmodel.spans import SpanSample
from saelab.evolution.matching import FeatureMatches, activation_similarities, matches_from
from saelab.evolution.similarity import dims


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
    ``null_rate_b`` (how often B's features pass the threshold under the null), ``n_spans``;
    with the sample's words also ``word_retained`` (median over A's matched active features of
    the share of the match's correlation that the word-keeping null keeps) and
    ``matched_share_beyond_words`` (A's active features matched *and* keeping under half)."""
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
    word_shuffles = {
        hook: within_word_shuffle(acts, sample.words, seed + 11) for hook, acts in sample.features[b].items()
    } if sample.words is not None else {}  # fmt: skip
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
                **(_beyond_words(acts_a, word_shuffles[hook_b], found, active) if word_shuffles else {}),
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


def within_word_shuffle(acts: sp.csr_matrix, words: Sequence[str], seed: int) -> sp.csr_matrix:
    """``acts``'s rows (``[n_spans, d_sae]``) shuffled only among spans of the same word."""
    n_spans = dims(acts)[0]
    if len(words) != n_spans:
        raise ValueError(f"{len(words)} words for {n_spans} spans; give one word per span")
    codes = pd.factorize(pd.Series(list(words)))[0]
    rng = np.random.default_rng(seed)
    # Both orders group the spans by word, in the same group order and sizes, so row
    # ``grouped[i]`` takes row ``mixed[i]``: a span of the same word.
    grouped = np.argsort(codes, kind="stable")
    mixed = np.lexsort((rng.random(len(codes)), codes))
    order = np.empty(len(codes), dtype=np.int64)
    order[grouped] = mixed
    return sp.csr_matrix(acts[order])


def _beyond_words(acts_a: sp.csr_matrix, shuffled_b: sp.csr_matrix, found: FeatureMatches, active_a: np.ndarray
                  ) -> dict[str, float]:  # fmt: skip
    """How much of each matched pair's correlation survives B's spans shuffled within words."""
    best = found.best
    rows = np.flatnonzero(best["matched"].to_numpy(bool) & active_a)
    if not rows.size:
        return {"word_retained": float("nan"), "matched_share_beyond_words": 0.0 if active_a.any() else float("nan")}
    cols = best["best_match"].to_numpy()[rows].astype(np.int64)
    kept = paired_correlation(acts_a[:, rows], shuffled_b[:, cols]) / best["similarity"].to_numpy(float)[rows]
    return {"word_retained": float(np.median(kept)),
            "matched_share_beyond_words": float(np.count_nonzero(kept < 0.5) / active_a.sum())}  # fmt: skip


def paired_correlation(x: sp.csr_matrix, y: sp.csr_matrix) -> np.ndarray:
    """``[n_pairs]``: Pearson correlation of column ``i`` of ``x`` with column ``i`` of ``y``
    (both ``[n_rows, n_pairs]``); 0 where a column is constant."""
    x, y = sp.csr_matrix(x, dtype=np.float64), sp.csr_matrix(y, dtype=np.float64)
    n = dims(x)[0]
    mean_x, mean_y = np.asarray(x.mean(axis=0))[0], np.asarray(y.mean(axis=0))[0]
    cov = np.asarray(x.multiply(y).sum(axis=0))[0] / n - mean_x * mean_y
    var_x = np.asarray(x.multiply(x).sum(axis=0))[0] / n - mean_x**2
    var_y = np.asarray(y.multiply(y).sum(axis=0))[0] / n - mean_y**2
    scale = np.sqrt(np.clip(var_x, 0, None) * np.clip(var_y, 0, None))
    return np.divide(cov, scale, out=np.zeros_like(cov), where=scale > 0)


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
