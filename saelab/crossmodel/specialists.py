"""Category specialists of two suites side by side, by relative depth.

Each model's :class:`saelab.analysis.LayerComparison` (notebook 03's statistics: AUROC,
permutation q-values, strength as strong-in minus strong-out) is cut to each category's best
feature per hook and lined up on the hook's relative depth, so layer 12 of 18 and layer 20
of 30 sit at the same place.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from saelab.analysis.layers import LayerComparison

COLUMNS = ["model", "hook", "depth", "category", "feature", "auroc", "q_value", "strong_in_minus_out",
           "is_specialist"]  # fmt: skip


def specialists_by_depth(
    comparisons: Mapping[str, LayerComparison], depths: Mapping[str, Mapping[str, float]]
) -> pd.DataFrame:
    """One row per (model, hook, category): the category's rank-1 feature by AUROC, with
    ``depth`` the hook's relative depth (:data:`COLUMNS`)."""
    if set(comparisons) != set(depths):
        raise ValueError(f"comparisons name {list(comparisons)} but depths {list(depths)}")
    frames = []
    for model, comparison in comparisons.items():
        table = comparison.specialists
        top = pd.DataFrame(table.loc[table["rank"] == 1])
        hooks = [str(h) for h in top["sae"]]
        missing = set(hooks) - set(depths[model])
        if missing:
            raise ValueError(f"{model}: no depth given for {sorted(missing)}")
        frames.append(top.assign(model=model, hook=hooks, depth=[depths[model][h] for h in hooks]))
    frame = pd.DataFrame(pd.concat(frames, ignore_index=True), columns=COLUMNS)
    return frame.sort_values(by=["model", "depth", "category"], kind="stable").reset_index(drop=True)


def specialist_summary(by_depth: pd.DataFrame) -> pd.DataFrame:
    """Per (model, hook): depth, categories with a significant specialist, and the mean over
    categories of the best AUROC and strength."""
    grouped = by_depth.groupby(["model", "hook"], sort=False)
    return grouped.agg(
        depth=("depth", "first"), n_specialist_categories=("is_specialist", "sum"),
        n_categories=("category", "nunique"), mean_best_auroc=("auroc", "mean"),
        mean_strength=("strong_in_minus_out", "mean"),
    ).reset_index()  # fmt: skip
