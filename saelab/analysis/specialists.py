"""Category specialists: features that prefer one category of texts, with their evidence.

For every category and feature, :func:`specialists` compares the texts inside the category
with those outside it: AUROC (a rank statistic), a label-permutation p-value, a
Benjamini-Hochberg q-value over all features and a bootstrap confidence interval
(:mod:`saelab.analysis.significance`), plus a count-based score, ``strong_in_minus_out``: texts
where the feature is strong inside the category minus outside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int

from saelab.analysis._checks import (
    Labels,
    as_numpy,
    check_top,
    check_unit,
    encode_labels,
    one_hot,
    select_categories,
)
from saelab.analysis.significance import (
    auroc_by_category,
    benjamini_hochberg,
    bootstrap_auroc_ci,
    midranks,
    permutation_pvalues,
)

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled


class StrongCounts(NamedTuple):
    """Texts on which each feature is "strong", inside and outside each category."""

    n_strong_in: Int[np.ndarray, "n_categories d_sae"]
    n_strong_out: Int[np.ndarray, "n_categories d_sae"]


def strong_counts(
    pooled: Pooled, codes: Int[np.ndarray, " n_texts"], n_categories: int, rel_strong: float = 0.5
) -> StrongCounts:
    """Texts on which each feature is "strong" (activation > 0 and >= ``rel_strong`` x its
    max over all texts), counted inside and outside each category. Their difference,
    ``n_strong_in - n_strong_out``, is the count-based specialist score ``strong_in_minus_out``."""
    x = as_numpy(pooled)
    strong = ((x > 0) & (x >= rel_strong * x.max(axis=0, keepdims=True))).astype(np.int64)
    n_strong_in = one_hot(codes, n_categories).astype(np.int64).T @ strong
    return StrongCounts(n_strong_in=n_strong_in, n_strong_out=strong.sum(axis=0)[None, :] - n_strong_in)


def specialists(
    pooled: Pooled,
    labels: Sequence[str],
    *,
    top: int = 5,
    n_permutations: int | None = None,
    alpha: float = 0.05,
    min_auroc: float = 0.8,
    rel_strong: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Features that prefer one category of texts, with statistics.

    For each category c (texts labelled c against all other texts) and every feature:

    * ``auroc``: P(a_in > a_out) + 0.5 P(a_in = a_out) for a random in-category and
      out-of-category text, from midranks (:func:`auroc_by_category`).
    * ``effect_size``: Cliff's delta = 2 auroc - 1 (-1..1).
    * ``p_value``: one-sided label-permutation p-value for "higher inside the category"
      with Besag-Clifford sequential stopping (:func:`permutation_pvalues`).
    * ``q_value``: Benjamini-Hochberg over all d_sae features within the category.
    * ``ci_low``, ``ci_high``: stratified percentile bootstrap interval of the AUROC
      (``confidence``, 95% by default; reported rows only; NaN when ``n_bootstrap=0``).
    * ``strong_in_minus_out`` = ``n_strong_in - n_strong_out`` (:func:`strong_counts`), with
      ``n_in``/``n_out`` texts inside/outside and ``mean_in``/``mean_out`` activations.
    * ``is_specialist``: q_value < alpha and auroc >= min_auroc and mean_in > mean_out.
    * ``n_permutations_run``: permutations the pair needed before it stopped.

    Returns one row per (category, feature) for the ``top`` features of each category by
    AUROC (ties: strong_in_minus_out, then feature id), categories in order of first
    appearance in ``labels`` (or as given in ``categories``), with a 1-based ``rank`` within
    the category.

    Resolution: the smallest p-value is 1 / (n_permutations + 1), so a category's *only*
    specialist reaches q < alpha only when n_permutations >= d_sae / alpha (92,160 for
    4,608 features; about 492,000 for GPT-2's 24,576). Several strong specialists in one
    category share the BH budget and need fewer. ``n_permutations=None`` therefore picks
    :func:`default_permutations` (twice that bound, at least 100,000); sequential stopping
    means only the strongest pairs ever run that many.
    """
    top = check_top(top)
    _check_options(alpha, min_auroc, rel_strong, n_bootstrap)
    x = as_numpy(pooled)
    n_permutations = default_permutations(x.shape[1], alpha) if n_permutations is None else n_permutations
    lab = encode_labels(labels, x.shape[0])
    if len(lab.names) < 2:
        raise ValueError(f"specialists needs at least two categories in labels, got {lab.names}")
    chosen = select_categories(lab.names, categories)
    stats = _pair_statistics(x, lab, chosen, n_permutations=n_permutations, rel_strong=rel_strong, seed=seed)
    rng = np.random.default_rng(seed)
    frames = [_category_rows(x, lab, c, stats, top) for c in chosen]
    for c, frame in zip(chosen, frames, strict=True):
        _add_intervals(frame, x, lab.codes == c, n_bootstrap, confidence, rng)
    table = pd.concat(frames, ignore_index=True)
    table["is_specialist"] = (table.q_value < alpha) & (table.auroc >= min_auroc) & (table.mean_in > table.mean_out)
    return table.loc[:, SPECIALIST_COLUMNS]


def _check_options(alpha: float, min_auroc: float, rel_strong: float, n_bootstrap: int) -> None:
    check_unit(alpha, "alpha", low_open=True)
    check_unit(min_auroc, "min_auroc")
    check_unit(rel_strong, "rel_strong", low_open=True)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0 (0 skips the intervals), got {n_bootstrap}")


def _add_intervals(
    frame: pd.DataFrame,
    x: Float[np.ndarray, "n_texts d_sae"],
    inside: Bool[np.ndarray, " n_texts"],
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> None:
    """The bootstrap interval of each reported row's AUROC (NaN when ``n_bootstrap=0``)."""
    frame["ci_low"], frame["ci_high"] = np.nan, np.nan
    if n_bootstrap:
        order = frame["feature"].to_numpy()
        ci = bootstrap_auroc_ci(x[inside][:, order], x[~inside][:, order], n_bootstrap=n_bootstrap,
                                confidence=confidence, rng=rng)  # fmt: skip
        frame["ci_low"], frame["ci_high"] = ci.low, ci.high


def _category_rows(
    x: Float[np.ndarray, "n_texts d_sae"], lab: Labels, c: int, stats: dict[str, np.ndarray], top: int
) -> pd.DataFrame:
    """Category ``c``'s ``top`` features, best first by AUROC, ties by strong_in_minus_out,
    then by feature id (lexsort takes its last key first)."""
    order = np.lexsort((np.arange(x.shape[1]), -stats["strong_in_minus_out"][c], -stats["auroc"][c]))[:top]
    frame = pd.DataFrame({name: values[c, order] for name, values in stats.items()})
    frame.insert(0, "category", lab.names[c])
    frame.insert(1, "rank", np.arange(1, len(order) + 1))
    frame.insert(2, "feature", order)
    return frame


def default_permutations(d_sae: int, alpha: float = 0.05) -> int:
    """Permutations that let a lone specialist among ``d_sae`` features reach q < alpha
    with room to spare: ``max(100_000, ceil(2 d_sae / alpha))``."""
    return max(100_000, math.ceil(2 * d_sae / alpha))


def _pair_statistics(
    x: Float[np.ndarray, "n_texts d_sae"],
    lab: Labels,
    chosen: list[int],
    *,
    n_permutations: int,
    rel_strong: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Every per-(category, feature) column of the specialists table, each [n_categories, d_sae]."""
    n_cat = len(lab.names)
    ranks = midranks(x)
    auroc = auroc_by_category(ranks, lab.codes, n_cat)
    perm = permutation_pvalues(ranks, lab.codes, chosen, n_permutations=n_permutations, seed=seed)
    strong = strong_counts(x, lab.codes, n_cat, rel_strong)
    in_category = one_hot(lab.codes, n_cat)
    n_in = in_category.sum(axis=0)[:, None]
    n_out = len(x) - n_in
    sum_in = in_category.T @ x
    ones = np.ones((1, x.shape[1]))
    return {
        "strong_in_minus_out": strong.n_strong_in - strong.n_strong_out,
        "n_strong_in": strong.n_strong_in,
        "n_strong_out": strong.n_strong_out,
        "n_in": (n_in * ones).astype(np.int64),
        "n_out": (n_out * ones).astype(np.int64),
        "mean_in": sum_in / n_in,
        "mean_out": (x.sum(axis=0, dtype=np.float64)[None, :] - sum_in) / n_out,
        "auroc": auroc,
        "effect_size": 2 * auroc - 1,
        "p_value": perm.p_value,
        "q_value": benjamini_hochberg(perm.p_value),
        "n_permutations_run": perm.n_run,
    }


SPECIALIST_COLUMNS = [
    "category", "rank", "feature", "strong_in_minus_out", "n_strong_in", "n_strong_out", "n_in", "n_out",
    "mean_in", "mean_out", "auroc", "effect_size", "p_value", "q_value", "ci_low", "ci_high",
    "is_specialist", "n_permutations_run",
]  # fmt: skip

_LOWER_IS_BETTER = {"p_value", "q_value"}


def specialist_matrix(table: pd.DataFrame, value: str = "strong_in_minus_out") -> pd.DataFrame:
    """Best ``value`` per category from a :func:`specialists` table (max; min for p/q-values).

    Index ``category`` (order of appearance), columns ``value`` and ``feature`` (the feature
    that has it). Among each category's reported rows, i.e. its top features by AUROC.
    """
    missing = {"category", "feature", value} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}; pass a DataFrame from specialists()")
    if table.empty:
        raise ValueError("table is empty")
    ascending = value in _LOWER_IS_BETTER
    best = table.sort_values([value, "rank"], ascending=[ascending, True], kind="stable").drop_duplicates("category")
    order = pd.unique(table.loc[:, "category"])
    return best.set_index("category").loc[order, [value, "feature"]]
