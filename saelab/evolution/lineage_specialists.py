"""Where the lineage of each category specialist goes through depth: does it reach every
hook, and does it stay a specialist of the same category there?

Reads a :class:`saelab.evolution.Lineages` and a ``comparison.specialists`` table
(``analysis.compare_layers``); a lineage here is :meth:`Lineages.lineage_of` (ancestors and
descendants), not the connected component.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from saelab.evolution.lineages import Lineages

SPECIALIST_LINEAGE_COLUMNS = [
    "sae", "category", "feature", "auroc", "q_value", "is_specialist", "lineage", "hooks_reached",
    "n_hooks_reached", "persists_through_depth", "same_category_hooks", "same_category_through_depth",
]  # fmt: skip


def specialist_lineages(
    lineages: Lineages,
    specialists: pd.DataFrame,
    *,
    hook: str | None = None,
    significant_only: bool = True,
    best_per_category: bool = True,
) -> pd.DataFrame:
    """Where the lineage of each category specialist goes through depth.

    ``specialists``: a ``comparison.specialists`` table (``analysis.compare_layers``: columns
    ``sae, category, feature, auroc, is_specialist, rank``) over the same hooks. The
    specialists followed are those at ``hook`` (None: at every traced hook), only the
    significant ones (``is_specialist``) unless ``significant_only=False``, and only the
    best-ranked per category and hook when ``best_per_category``.

    One row per specialist: ``hooks_reached`` by its lineage (:meth:`Lineages.lineage_of`),
    ``persists_through_depth`` (its lineage has a feature at every hook),
    ``same_category_hooks`` (hooks where the lineage holds a significant specialist of the
    same category, its own hook included when it is one), ``same_category_through_depth``
    (that at every hook), and one column per hook with the lineage's features there.
    """
    needed = ["sae", "category", "feature", "auroc", "q_value", "is_specialist", "rank"]
    missing = [c for c in needed if c not in specialists.columns]
    if missing:
        raise ValueError(
            f"specialists lacks columns {missing}; pass comparison.specialists from analysis.compare_layers"
        )
    if hook is not None and hook not in lineages.hooks:
        raise ValueError(f"Unknown hook {hook!r}; the lineages were traced over {list(lineages.hooks)}")
    table = specialists.loc[specialists["sae"].isin([hook] if hook is not None else list(lineages.hooks))]
    if significant_only:
        table = table.loc[table["is_specialist"].astype(bool)]
    depth = [lineages.hooks.index(h) for h in table["sae"]]
    table = table.assign(_depth=depth).sort_values(["_depth", "rank"], kind="stable")
    if best_per_category:
        table = table.drop_duplicates(["sae", "category"])
    significant = specialists.loc[specialists["is_specialist"].astype(bool)]
    known = set(zip(significant["sae"], significant["category"], significant["feature"].astype(int), strict=True))
    rows = [_specialist_row(lineages, row, known) for row in table.itertuples(index=False)]
    columns = SPECIALIST_LINEAGE_COLUMNS + list(lineages.hooks)
    return pd.DataFrame(rows, columns=columns).reset_index(drop=True)


def _specialist_row(lineages: Lineages, row: Any, known: set[tuple[str, str, int]]) -> dict[str, Any]:
    sae, category, feature = str(row.sae), str(row.category), int(row.feature)
    nodes = lineages.lineage_of(sae, feature)
    by_hook = {h: tuple(int(f) for f in nodes.loc[nodes["hook"] == h, "feature"]) for h in lineages.hooks}
    reached = tuple(h for h in lineages.hooks if by_hook[h])
    same = tuple(h for h in lineages.hooks if any((h, category, f) in known for f in by_hook[h]))
    return {
        "sae": sae, "category": category, "feature": feature, "auroc": float(row.auroc),
        "q_value": float(row.q_value), "is_specialist": bool(row.is_specialist),
        "lineage": lineages.lineage_id(sae, feature), "hooks_reached": reached, "n_hooks_reached": len(reached),
        "persists_through_depth": len(reached) == len(lineages.hooks), "same_category_hooks": same,
        "same_category_through_depth": len(same) == len(lineages.hooks), **by_hook,
    }  # fmt: skip
