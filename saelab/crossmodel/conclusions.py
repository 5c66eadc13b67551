"""Sentences computed from the comparison's numbers, and what confounds them.

Each sentence states a number beside its baseline; none is written by hand in a notebook.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saelab.crossmodel.matching import CrossModelMatches

CONFOUNDS = (
    "base vs instruct: Gemma-3-270M is a base model, SmolLM2-135M-Instruct is tuned to chat",
    "different tokenizers (262k vs 49k entries): features are compared on word spans, max-pooled, "
    "which blurs sub-word features",
    "different widths (d_model 640 vs 576; 5,120 vs 4,608 features) and different training data of the models",
    "one SAE per hook and seed: a second seed of the same SAE would set how much two dictionaries of one "
    "model agree, the ceiling these shares should be read against",
)


def matching_sentences(found: CrossModelMatches) -> list[str]:
    """Where cross-model matches peak, and how far above the null."""
    grid = found.grid
    best = grid.loc[grid["matched_share_active"].idxmax()]
    diag = grid.assign(gap=(grid["depth_a"] - grid["depth_b"]).abs())
    near = diag[diag["gap"] <= diag.groupby("hook_a")["gap"].transform("min")]
    far = diag.drop(near.index)
    margin = grid["matched_share_active"].to_numpy(float) - grid["null_rate"].to_numpy(float)
    out = [
        f"The largest share of {found.model_a} features with a match in {found.model_b} is "
        f"{best['matched_share_active']:.1%} of active features ({best['hook_a']} against {best['hook_b']}, "
        f"relative depths {best['depth_a']:.2f} and {best['depth_b']:.2f}); the shuffled-span null passes "
        f"{best['null_rate']:.1%} there.",
        f"{int(np.count_nonzero(margin > 0))} of {len(grid)} depth pairs have a matched share above their "
        f"null rate (smallest margin {float(margin.min()):+.1%}).",
    ]
    if len(far):
        out.append(
            f"At the closest relative depth the mean share is {near['matched_share_active'].mean():.1%}; "
            f"at other depth pairs {far['matched_share_active'].mean():.1%}."
        )
    if "word_retained" in grid:
        beyond = grid["matched_share_beyond_words"].to_numpy(float)
        out.append(
            f"With {found.model_b}'s spans shuffled only among the same word, matched pairs keep a median "
            f"{grid['word_retained'].min():.0%}-{grid['word_retained'].max():.0%} of their correlation "
            f"(what word identity alone gives); {np.nanmin(beyond):.1%}-{np.nanmax(beyond):.1%} of "
            f"{found.model_a}'s active features have a match that loses more than half of it, one that needs "
            f"the context ({near['matched_share_beyond_words'].mean():.1%} on average at the closest depth)."
        )
    return out


def svcca_sentence(rows: pd.DataFrame) -> str:
    """``rows``: one per depth pair with ``svcca, svcca_random, above_random_sd`` columns."""
    above = rows[rows["svcca"] > rows["svcca_random"] + 2 * rows["svcca_random_sd"]]
    return (
        f"SVCCA of matched decoder directions is above random pairings by more than 2 SD at {len(above)} of "
        f"{len(rows)} depth pairs (matched {rows['svcca'].min():.3f}-{rows['svcca'].max():.3f}; random "
        f"{rows['svcca_random'].min():.3f}-{rows['svcca_random'].max():.3f})."
    )


def specialist_sentences(summary: pd.DataFrame) -> list[str]:
    """From :func:`saelab.crossmodel.specialists.specialist_summary`."""
    out = []
    for model, part in summary.groupby("model", sort=False):
        part = part.sort_values("depth")
        out.append(
            f"{model}: categories with a significant specialist by depth "
            + ", ".join(f"{d:.2f}: {int(n)}/{int(c)}" for d, n, c in
                        zip(part["depth"], part["n_specialist_categories"], part["n_categories"], strict=True))
            + f"; mean best AUROC {part['mean_best_auroc'].min():.3f}-{part['mean_best_auroc'].max():.3f}."
        )  # fmt: skip
    return out


def explanation_sentence(table: pd.DataFrame, metric: str = "simulation", explainer: str = "top_tokens") -> str:
    """From :func:`saelab.crossmodel.explanations.explainability_table`."""
    chosen = pd.DataFrame(table.loc[(table["metric"] == metric) & (table["explainer"] == explainer)])
    rows: dict[str, dict[str, float]] = {str(r["model"]): r for r in chosen.to_dict(orient="records")}
    if len(rows) < 2:
        return f"Not every model has {explainer} {metric} scores; no comparison."
    parts = [f"{m}: median margin over shuffled {r['margin']:+.3f} [{r['margin_low']:+.3f}, {r['margin_high']:+.3f}] "
             f"(n={int(r['n'])})" for m, r in rows.items()]  # fmt: skip
    (a, ra), (b, rb) = list(rows.items())[:2]
    disjoint = ra["margin_low"] > rb["margin_high"] or rb["margin_low"] > ra["margin_high"]
    verdict = (
        f"{a if ra['margin'] > rb['margin'] else b} is more explainable, the intervals do not overlap"
        if disjoint
        else "the intervals overlap: neither dictionary is clearly more explainable here"
    )
    return f"{explainer} explanations, {metric} score: " + "; ".join(parts) + f"; {verdict}."
