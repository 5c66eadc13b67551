"""A sweep's Pareto frontiers: L0 against each quality (explained variance, CE loss recovered),
one line per architecture through its undominated members, every member as a point, and a
reference SAE (the bundled suite's) as a star. Takes :func:`saelab.train.sweep_eval.evaluate_sweep`'s
frame; returns a ``go.Figure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.evals.pareto import frontier
from saelab.viz.style import apply_layout, category_color, check_frame, check_numeric, unique_in_order, value_label

_SHORT = {"explained_variance_typical": "EV without massive activations"}
"""Panel titles that would run into their neighbours at full length."""


def sweep_frontiers(
    frame: pd.DataFrame,
    qualities: Sequence[str] = ("explained_variance", "ce_loss_recovered"),
    *,
    by: str = "activation",
    reference: Mapping[str, Any] | None = None,
    title: str = "Sparsity against fidelity: each architecture's frontier",
) -> go.Figure:
    """One panel per quality; ``reference``: a row with ``l0``, the qualities and ``name``."""
    check_frame(frame, ["l0", by, "member", *qualities], "sweep frame")
    check_numeric(frame, ["l0", *qualities], "sweep frame")
    groups = [str(g) for g in unique_in_order(frame[by])]
    fig = make_subplots(rows=1, cols=len(qualities), subplot_titles=[_SHORT.get(q, value_label(q)) for q in qualities],
                        horizontal_spacing=0.1)  # fmt: skip
    for col, quality in enumerate(qualities, start=1):
        lines = frontier(frame, quality, by)
        for group in groups:
            color = category_color(group)
            points = frame[frame[by].astype(str) == group]
            line = lines[lines[by].astype(str) == group]
            fig.add_trace(go.Scatter(
                x=line["l0"], y=line[quality], mode="lines", line=dict(color=color, width=2), name=group,
                legendgroup=group, showlegend=col == 1, hoverinfo="skip",
            ), row=1, col=col)  # fmt: skip
            fig.add_trace(go.Scatter(
                x=points["l0"], y=points[quality], mode="markers", name=group, legendgroup=group, showlegend=False,
                marker=dict(size=10, color=color, line=dict(color="white", width=1)), text=points["member"],
                hovertemplate=f"%{{text}}<br>L0 %{{x:.1f}}<br>{value_label(quality)} %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)  # fmt: skip
        if reference is not None and quality in reference:
            name = str(reference.get("name", "reference"))
            fig.add_trace(go.Scatter(
                x=[reference["l0"]], y=[reference[quality]], mode="markers", name=name, legendgroup="reference",
                showlegend=col == 1, marker=dict(symbol="star", size=16, color="#222222"),
                hovertemplate=f"{name}<br>L0 %{{x:.1f}}<br>{value_label(quality)} %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)  # fmt: skip
        ticks = [2**i for i in range(0, 14) if frame["l0"].min() / 2 <= 2**i <= frame["l0"].max() * 2]
        fig.update_xaxes(type="log", title_text=value_label("l0"), tickvals=ticks, row=1, col=col)
    return apply_layout(fig, title, height=460, legend=dict(orientation="h", y=-0.2))
