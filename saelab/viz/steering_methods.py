"""Steering methods side by side: per category, each method's held-out concept gain with its CI.

Precomputed data in (a steering comparison's table), ``go.Figure`` out. A filled marker passed
(CI clear of 0, perplexity within its bound, no degenerate repetition); a hollow one did not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab.viz.style import apply_layout, check_frame, check_numeric, unique_in_order

METHODS_COLUMNS = ("category", "method", "arm", "gain", "gain_lo", "gain_hi", "perplexity_ratio", "distinct_ratio",
                   "passed")  # fmt: skip
"""What :func:`steering_methods_figure` needs: one row per (category, method)."""
METHOD_COLORS = {"sae": "#0072B2", "diffmean": "#D55E00", "prompting": "#009E73", "random": "#999999",
                 "none": "#333333"}  # fmt: skip
METHOD_NAMES = {"sae": "SAE feature", "diffmean": "DiffMean", "prompting": "prompting", "random": "random feature",
                "none": "no edit"}  # fmt: skip


def steering_methods_figure(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """One row per category, one marker per method (offset vertically), whiskers for the 95% CI."""
    check_frame(table, METHODS_COLUMNS, "table")
    check_numeric(table, ("gain", "gain_lo", "gain_hi", "perplexity_ratio", "distinct_ratio"), "table")
    table = table.loc[table["method"] != "none"]
    categories = unique_in_order(table["category"])
    methods = unique_in_order(table["method"])
    offsets = np.linspace(-0.3, 0.3, len(methods)) if len(methods) > 1 else np.zeros(1)
    fig = go.Figure()
    for method, offset in zip(methods, offsets, strict=True):
        part = table.loc[table["method"] == method]
        y = np.array([categories.index(c) for c in part["category"]]) + offset
        gain = part["gain"].to_numpy(float)
        color = METHOD_COLORS.get(method, "#444444")
        passed = part["passed"].to_numpy(bool)
        fig.add_trace(go.Scatter(
            x=gain, y=y, mode="markers", name=METHOD_NAMES.get(method, method),
            marker=dict(size=11, color=[color if p else "white" for p in passed], line=dict(color=color, width=2)),
            error_x=dict(type="data", symmetric=False, color=color, thickness=1.5,
                         array=np.nan_to_num(part["gain_hi"].to_numpy(float) - gain),
                         arrayminus=np.nan_to_num(gain - part["gain_lo"].to_numpy(float))),
            customdata=np.stack([part["arm"].astype(str), part["perplexity_ratio"].round(2),
                                 part["distinct_ratio"].round(2), np.where(passed, "passed", "not passed")], axis=1),
            hovertemplate=("%{customdata[0]}<br>gain %{x:+.1%}<br>perplexity ×%{customdata[1]}"
                           "<br>distinct-2 ×%{customdata[2]}<br>%{customdata[3]}<extra></extra>"),
        ))  # fmt: skip
    fig.add_vline(x=0, line=dict(color="#333333", width=1))
    apply_layout(
        fig,
        title or "Steering methods on held-out prompts: concept gain (95% CI); filled = passed",
        x="concept gain (steered − baseline probe probability)",
        xaxis=dict(tickformat="+.0%", zeroline=False),
        yaxis=dict(tickmode="array", tickvals=list(range(len(categories))), ticktext=categories, autorange="reversed"),
        height=max(360, 120 + 70 * len(categories)),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    fig.update_layout(margin=dict(l=130, r=40, t=110))
    return fig
