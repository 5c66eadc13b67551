"""Figures that compare SAEs across layers: specialist scores by category and layer,
coverage of the most frequent feature, specialist counts. Precomputed data in (the fields
of :class:`saelab.analysis.LayerComparison`), ``go.Figure`` out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab.viz.style import apply_layout, as_finite_array, check_frame, check_numeric, sae_colors, value_label


def specialist_heatmap(
    scores: pd.DataFrame,
    *,
    title: str = "Best specialist score by category and SAE",
    value: str = "strong_in_minus_out",
) -> go.Figure:
    """Category (rows) × SAE (columns) heatmap of ``LayerComparison.scores``, values printed in cells."""
    if not isinstance(scores, pd.DataFrame) or scores.empty:
        raise ValueError("scores must be a non-empty DataFrame (category × sae), e.g. LayerComparison.scores")
    z = as_finite_array(scores.to_numpy(dtype=float), "scores", ndim=2)
    label = value_label(value)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in scores.columns],
            y=[str(i) for i in scores.index],
            colorscale="YlOrRd",
            texttemplate="%{z:.4~g}",
            colorbar=dict(title=dict(text=label, side="right")),
            hovertemplate="category: %{y}<br>SAE: %{x}<br>" + label + ": %{z:.3g}<extra></extra>",
            name=label,
        )
    )
    fig.update_yaxes(autorange="reversed")
    return apply_layout(fig, title, x="SAE", y="category", height=max(350, 40 * len(scores) + 150))


def coverage_by_layer(
    frequent_long: pd.DataFrame, *, title: str = "Coverage of the most frequent feature, by SAE"
) -> go.Figure:
    """Share of texts on which each SAE's most frequent (rank-1) feature fires.

    Takes ``LayerComparison.frequent`` (columns sae, rank, feature, frequency); bars keep the
    SAE order of the frame and are labelled with the feature id.
    """
    check_frame(frequent_long, ["sae", "rank", "feature", "frequency"], "frequent_long")
    check_numeric(frequent_long, ["frequency"], "frequent_long")
    top = frequent_long[frequent_long["rank"] == 1]
    if top.empty:
        raise ValueError("frequent_long has no rank-1 rows")
    names = [str(s) for s in top["sae"]]
    colors = sae_colors(names)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=top["frequency"],
            text=[f"#{int(f)}<br>{v:.0%}" for f, v in zip(top["feature"], top["frequency"], strict=True)],
            textposition="outside",
            customdata=top["feature"].astype(int),
            marker_color=[colors[n] for n in names],
            hovertemplate=(
                "SAE: %{x}<br>most frequent feature #%{customdata}<br>active on %{y:.1%} of texts<extra></extra>"
            ),
            name="coverage",
        )
    )
    apply_layout(fig, title, x="SAE", y="share of texts where active")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.1])
    return fig


def specialist_count_by_layer(
    counts: pd.Series,
    n_categories: int,
    *,
    title: str = "Categories with at least one specialist, by SAE",
) -> go.Figure:
    """Line of ``LayerComparison.counts`` (categories with >= 1 specialist per SAE), with the
    dashed "all categories" target line."""
    if not isinstance(counts, pd.Series) or counts.empty:
        raise ValueError("counts must be a non-empty pandas Series (sae -> number of categories)")
    if not isinstance(n_categories, (int, np.integer)) or n_categories < 1:
        raise ValueError(f"n_categories must be a positive integer, got {n_categories!r}")
    y = as_finite_array(counts.to_numpy(dtype=float), "counts", ndim=1)
    if (y < 0).any() or (y > n_categories).any():
        raise ValueError(f"counts must lie in [0, n_categories={n_categories}], got {y.tolist()}")
    names = [str(s) for s in counts.index]
    fig = go.Figure(
        [
            go.Scatter(
                x=names,
                y=y,
                mode="lines+markers+text",
                text=[f"{int(v)}/{n_categories}" for v in y],
                textposition="top center",
                marker=dict(size=10, color="#0072B2"),
                name="categories with a specialist",
                hovertemplate=f"SAE: %{{x}}<br>categories with a specialist: %{{y}} of {n_categories}<extra></extra>",
            ),
            go.Scatter(
                x=names,
                y=[n_categories] * len(names),
                mode="lines",
                line=dict(color="#2E7D32", dash="dash"),
                name=f"all categories ({n_categories})",
                hovertemplate=f"target: all {n_categories} categories<extra></extra>",
            ),
        ]
    )
    apply_layout(fig, title, x="SAE", y="categories with ≥ 1 specialist")
    fig.update_yaxes(range=[0, n_categories + 0.8], dtick=1)
    return fig
