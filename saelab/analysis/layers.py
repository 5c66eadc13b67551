"""The same analyses run on several SAEs (typically one per layer) over the same texts, and
how each headline number moves with depth, in words computed from the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from jaxtyping import Float
from scipy.stats import rankdata

from saelab._util.hook_names import hook_layer
from saelab.analysis._checks import as_numpy
from saelab.analysis.rankings import frequent, selective, strongest
from saelab.analysis.specialists import SPECIALIST_COLUMNS, specialist_matrix, specialists
from saelab.analysis.table_cache import cached_specialists

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled


@dataclass(frozen=True)
class LayerComparison:
    """The same analyses run on several SAEs (typically one per layer) over the same texts."""

    summary: pd.DataFrame
    """One row per SAE (index ``sae``, in the given order): ``strongest_feature,
    strongest_value`` (max activation), ``frequent_feature, frequent_coverage`` (share of
    texts active), ``selective_feature, selective_value`` (mean when active; <NA>/NaN when no
    feature is eligible), ``n_specialist_categories`` (categories with at least one
    ``is_specialist`` row), ``n_categories``, ``best_category, best_category_score`` (the
    category with the highest best strong_in_minus_out, first one on ties)."""
    specialists: pd.DataFrame
    """:func:`specialists` rows of every SAE, with an ``sae`` column first."""
    scores: pd.DataFrame
    """Best strong_in_minus_out among each category's reported specialists: category x sae."""
    counts: pd.Series
    """sae -> number of categories with at least one specialist."""
    strongest: pd.DataFrame
    """Columns ``sae, rank, feature, max_activation``: the top 5 per SAE."""
    frequent: pd.DataFrame
    """Columns ``sae, rank, feature, frequency``: the top 5 per SAE."""


def compare_layers(
    pooled_by_sae: Mapping[str, Pooled], labels: Sequence[str], *, cache: bool = True, **specialist_kwargs: Any
) -> LayerComparison:
    """Run strongest / frequent / selective / specialists on each SAE's pooled activations
    (all over the same texts and ``labels``) and line the results up per SAE.
    ``specialist_kwargs`` go to :func:`specialists`. With ``cache``, each SAE's specialist
    table is read back when the same activations, labels and settings were tested before
    (:mod:`saelab.analysis.table_cache`)."""
    if not pooled_by_sae:
        raise ValueError("pooled_by_sae is empty; pass {sae_name: pooled activations}")
    names = list(pooled_by_sae)
    tables, summaries, strong, freq = [], [], [], []
    for name in names:
        x = as_numpy(pooled_by_sae[name], f"pooled_by_sae[{name!r}]")
        table = (cached_specialists if cache else specialists)(x, labels, **specialist_kwargs)
        tables.append(table.assign(sae=name))
        strong.append(strongest(x, top=5)[["rank", "feature", "max_activation"]].assign(sae=name))
        freq.append(frequent(x, top=5)[["rank", "feature", "frequency"]].assign(sae=name))
        summaries.append(_layer_summary(x, table))
    long = pd.concat(tables, ignore_index=True)
    best = {n: specialist_matrix(t)["strong_in_minus_out"] for n, t in zip(names, tables, strict=True)}
    scores = pd.concat(best, axis=1)
    scores.columns.name = "sae"
    counts = pd.Series([s["n_specialist_categories"] for s in summaries], index=pd.Index(names, name="sae"),
                       name="n_specialist_categories")  # fmt: skip
    summary = pd.DataFrame(summaries, index=pd.Index(names, name="sae"))
    for column in ("strongest_feature", "frequent_feature", "selective_feature"):
        summary[column] = summary[column].astype("Int64")
    return LayerComparison(
        summary=summary,
        specialists=long.loc[:, ["sae", *SPECIALIST_COLUMNS]],
        scores=scores,
        counts=counts,
        strongest=_sae_first(strong),
        frequent=_sae_first(freq),
    )


def _sae_first(frames: list[pd.DataFrame]) -> pd.DataFrame:
    long = pd.concat(frames, ignore_index=True)
    return long.loc[:, ["sae", *long.columns.drop("sae")]]


def _layer_summary(x: Float[np.ndarray, "n_texts d_sae"], table: pd.DataFrame) -> dict[str, Any]:
    top_strong = strongest(x, top=1).iloc[0]
    top_freq = frequent(x, top=1).iloc[0]
    top_sel = selective(x, top=1)
    best = specialist_matrix(table).loc[:, "strong_in_minus_out"]
    return {
        "strongest_feature": int(top_strong.feature),
        "strongest_value": float(top_strong.max_activation),
        "frequent_feature": int(top_freq.feature),
        "frequent_coverage": float(top_freq.frequency),
        "selective_feature": int(top_sel.feature.iloc[0]) if len(top_sel) else pd.NA,
        "selective_value": float(top_sel.mean_when_active.iloc[0]) if len(top_sel) else np.nan,
        "n_specialist_categories": int(table.loc[table.is_specialist, "category"].nunique()),
        "n_categories": int(table.loc[:, "category"].nunique()),
        "best_category": str(best.idxmax()),
        "best_category_score": float(best.max()),
    }


# ---------------------------------------------------------------------------------------
# How the comparison changes with depth.

_TREND_METRICS = {
    "n_specialist_categories": "the number of categories with at least one significant specialist",
    "mean_best_auroc": "the mean over categories of the best specialist's AUROC",
    "frequent_coverage": "the share of texts the most frequent feature fires on",
    "strongest_value": "the largest pooled activation of any feature",
}


def layer_trends(comparison: LayerComparison, depth: Mapping[str, float] | None = None) -> pd.DataFrame:
    """How each headline number of a :class:`LayerComparison` moves with depth.

    ``depth`` maps SAE name to layer; by default the layer is read from the hook name
    (``blocks.L.*``), else the given order is used. One row per metric: ``metric,
    description, first_sae, last_sae, first, last, change`` (last - first), ``spearman``
    (rank correlation with depth; NaN when either side is constant) and ``trend``: "rises"
    or "falls" when every step goes the same way, "rises overall" / "falls overall" when
    last and first differ but the path is not monotone, "stays flat" when last equals first,
    "stays about flat" when they differ by at most :data:`FLAT_TOLERANCE` of the larger.
    """
    names = list(comparison.summary.index)
    if len(names) < 2:
        raise ValueError("layer_trends needs at least two SAEs to compare")
    order = _depth_order(names, depth)
    # cast: one column of a grouped frame, so a Series (pandas' annotations allow a DataFrame).
    best_auroc = cast(pd.Series, comparison.specialists.groupby(["sae", "category"], sort=False)["auroc"].max())
    values = comparison.summary.assign(mean_best_auroc=best_auroc.groupby(level="sae", sort=False).mean())
    rows = []
    for metric, description in _TREND_METRICS.items():
        series = values.loc[order, metric].astype(float).to_numpy()
        rows.append({
            "metric": metric,
            "description": description,
            "first_sae": order[0],
            "last_sae": order[-1],
            "first": series[0],
            "last": series[-1],
            "change": series[-1] - series[0],
            "spearman": _spearman(np.arange(len(series)), series),
            "trend": _trend_word(series),
        })  # fmt: skip
    return pd.DataFrame(rows)


def describe_trends(trends: pd.DataFrame) -> list[str]:
    """One sentence per row of :func:`layer_trends`, e.g. "The share of texts the most
    frequent feature fires on falls: 0.61 at blocks.15.hook_resid_pre -> 0.43 at
    blocks.28.hook_resid_pre (Spearman -1.00)."."""
    sentences = []
    for row in trends.to_dict("records"):
        rho = "" if np.isnan(row["spearman"]) else f" (Spearman {row['spearman']:+.2f})"
        description = row["description"]
        sentences.append(
            f"{description[0].upper()}{description[1:]} {row['trend']}: {row['first']:.3g} at {row['first_sae']}"
            f" -> {row['last']:.3g} at {row['last_sae']}{rho}."
        )
    return sentences


def _depth_order(names: list[str], depth: Mapping[str, float] | None) -> list[str]:
    if depth is None:
        layers: dict[str, float] = {}
        for name in names:
            layer = hook_layer(name)
            if layer is None:  # not every name is a hook: keep the given order
                return names
            layers[name] = layer
        depth = layers
    missing = [name for name in names if name not in depth]
    if missing:
        raise ValueError(f"depth has no entry for {missing}; give one per SAE in the comparison")
    return sorted(names, key=depth.__getitem__)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


FLAT_TOLERANCE = 0.02
"""A first-to-last change within this share of the larger end is reported as "stays about
flat" rather than a rise or fall (coverage 1.00 -> 0.99 is not a finding)."""


def _trend_word(series: np.ndarray) -> str:
    steps = np.diff(series)
    if series[-1] == series[0]:
        return "stays flat"
    if abs(series[-1] - series[0]) <= FLAT_TOLERANCE * max(abs(series[0]), abs(series[-1])):
        return "stays about flat"
    if (steps >= 0).all():
        return "rises"
    if (steps <= 0).all():
        return "falls"
    return "rises overall" if series[-1] > series[0] else "falls overall"
