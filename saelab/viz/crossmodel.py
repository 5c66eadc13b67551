"""Figures that compare two models' SAE suites: the share of features with a cross-model match
by depth pair (each cell with its null rate), and each category's best specialist by relative
depth for both models. Precomputed frames in (:mod:`saelab.crossmodel`), ``go.Figure`` out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import (
    apply_layout,
    category_color,
    check_frame,
    check_numeric,
    unique_in_order,
    value_label,
)

_MODEL_DASH = ("solid", "dash", "dot")


def match_share_heatmap(
    grid: pd.DataFrame,
    *,
    model_a: str = "model A",
    model_b: str = "model B",
    value: str = "matched_share_active",
    title: str | None = None,
) -> go.Figure:
    """Depth pair heatmap of ``CrossModelMatches.grid``: rows are model A's hooks, columns
    model B's, each cell the share with its null rate printed beneath (and, where the grid
    has it, the share whose match needs the context: ``matched_share_beyond_words``)."""
    check_frame(grid, ["hook_a", "hook_b", "depth_a", "depth_b", value, "null_rate"], "grid")
    check_numeric(grid, [value, "null_rate"], "grid")
    rows, cols = unique_in_order(grid["hook_a"]), unique_in_order(grid["hook_b"])
    share = grid.pivot(index="hook_a", columns="hook_b", values=value).loc[rows, cols]
    null = grid.pivot(index="hook_a", columns="hook_b", values="null_rate").loc[rows, cols]
    depth_a = grid.groupby("hook_a")["depth_a"].first().loc[rows]
    depth_b = grid.groupby("hook_b")["depth_b"].first().loc[cols]
    text = np.vectorize(lambda s, n: f"{s:.1%}<br>null {n:.1%}")(share.to_numpy(), null.to_numpy())
    if "matched_share_beyond_words" in grid:  # the word-keeping null's count, where measured
        beyond = grid.pivot(index="hook_a", columns="hook_b", values="matched_share_beyond_words").loc[rows, cols]
        text = np.vectorize(lambda t, b: f"{t}<br>context {b:.1%}")(text, beyond.to_numpy())
    fig = go.Figure(go.Heatmap(
        z=share.to_numpy(), x=[_axis_label(h, d) for h, d in depth_b.items()],
        y=[_axis_label(h, d) for h, d in depth_a.items()], text=text, texttemplate="%{text}",
        colorscale="Blues", zmin=0, colorbar=dict(title=dict(text="matched share", side="right"), tickformat=".0%"),
        hovertemplate=f"{model_a}: %{{y}}<br>{model_b}: %{{x}}<br>%{{text}}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    title = title or f"Share of {model_a} features with a good match in {model_b}, by depth pair"
    return apply_layout(fig, title, x=f"{model_b} hook", y=f"{model_a} hook", height=140 + 90 * len(rows))


def _axis_label(hook: str, depth: float) -> str:
    return f"{hook.removesuffix('.hook_resid_pre')}<br>depth {depth:.2f}"


def specialists_by_depth_figure(
    by_depth: pd.DataFrame,
    *,
    value: str = "strong_in_minus_out",
    title: str = "Each category's best specialist by relative depth",
) -> go.Figure:
    """One panel per category: the rank-1 feature's ``value`` (strength, or ``auroc``) against
    relative depth, one line per model; filled markers are significant specialists."""
    check_frame(by_depth, ["model", "depth", "category", value, "is_specialist", "hook", "feature"], "by_depth")
    check_numeric(by_depth, ["depth", value], "by_depth")
    categories, models = unique_in_order(by_depth["category"]), unique_in_order(by_depth["model"])
    cols = min(4, len(categories))
    n_rows = -(-len(categories) // cols)
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=categories, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.16)  # fmt: skip
    for i, category in enumerate(categories):
        for j, model in enumerate(models):
            chosen = (by_depth["category"] == category) & (by_depth["model"] == model)
            part = pd.DataFrame(by_depth.loc[chosen]).sort_values(by="depth")
            fig.add_trace(go.Scatter(
                x=part["depth"], y=part[value], mode="lines+markers", name=model, legendgroup=model,
                showlegend=i == 0, line=dict(color=category_color(category), dash=_MODEL_DASH[j % 3]),
                marker=dict(size=9, symbol=["circle" if s else "circle-open" for s in part["is_specialist"]]),
                customdata=np.stack([part["hook"], part["feature"]], axis=1),
                hovertemplate=f"{model}<br>%{{customdata[0]}} #%{{customdata[1]}}<br>depth %{{x:.2f}}<br>"
                + value_label(value) + " %{y:.3g}<extra></extra>",
            ), row=i // cols + 1, col=i % cols + 1)  # fmt: skip
    fig.update_xaxes(title_text="relative depth", row=n_rows)
    fig.update_yaxes(title_text=value_label(value), col=1)
    apply_layout(fig, title + " (filled: significant specialist)", height=300 * n_rows + 140)
    return fig.update_layout(margin=dict(t=110))  # the long y-axis title must clear the figure's title
