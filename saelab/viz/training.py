"""Figures that judge training: training curves, and sparsity against reconstruction with
the Pareto frontier. Precomputed data in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import (
    FRACTION_COLUMNS,
    apply_layout,
    check_frame,
    check_numeric,
    sae_colors,
    unique_in_order,
    value_label,
)


def pareto(
    frame: pd.DataFrame | Sequence[Mapping[str, Any]],
    x: str = "l0",
    y: str = "explained_variance",
    color: str | None = "sae",
    *,
    log_x: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Sparsity vs reconstruction scatter for comparing SAEs, with the Pareto frontier.

    Lower ``x`` (fewer active features) and higher ``y`` (better reconstruction) are better; the
    frontier joins the points no other point beats on both.
    """
    frame = pd.DataFrame(frame)
    check_frame(frame, [x, y] + ([color] if color else []), "frame")
    check_numeric(frame, [x, y], "frame")
    fig = go.Figure()
    groups = unique_in_order(frame[color]) if color else [None]
    palette = sae_colors([str(g) for g in groups]) if color else {}
    for group in groups:
        part = frame if group is None else frame[frame[color] == group]
        name = value_label(y) if group is None else str(group)
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                marker=dict(size=11, color=palette.get(name, "#0072B2"), line=dict(color="white", width=1)),
                name=name,
                hovertemplate=f"{name}<br>{value_label(x)}: %{{x:.3g}}<br>{value_label(y)}: %{{y:.3g}}<extra></extra>",
            )
        )
    front = pareto_front(frame[x].to_numpy(dtype=float), frame[y].to_numpy(dtype=float))
    fig.add_trace(
        go.Scatter(
            x=frame[x].to_numpy()[front],
            y=frame[y].to_numpy()[front],
            mode="lines",
            line=dict(color="#999999", dash="dot", shape="hv"),
            name="Pareto frontier",
            hovertemplate="frontier<extra></extra>",
        )
    )
    apply_layout(fig, title or f"{value_label(y)} vs {value_label(x)}", x=value_label(x), y=value_label(y))
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not beaten on both "lower x" and "higher y", sorted by x."""
    order = np.lexsort((-y, x))  # by x ascending, best y first among equal x
    ys = y[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    return order[ys > best_before]


def training_curves(
    history: pd.DataFrame | Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = ("loss", "l0", "explained_variance"),
    *,
    by: str | None = None,
    log_loss: bool = True,
    title: str = "Training curves",
) -> go.Figure:
    """One panel per metric against ``step`` (``TrainResult.history``); ``by`` overlays runs."""
    frame = pd.DataFrame(list(history) if not isinstance(history, pd.DataFrame) else history)
    check_frame(frame, ["step", *metrics] + ([by] if by else []), "history")
    check_numeric(frame, ["step", *metrics], "history")
    fig = make_subplots(
        rows=len(metrics),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[value_label(m) for m in metrics],
    )
    runs = unique_in_order(frame[by]) if by else [None]
    palette = sae_colors([str(r) for r in runs]) if by else {}
    for run in runs:
        part = (frame if run is None else frame.loc[frame[by] == run]).sort_values("step")
        name = "run" if run is None else str(run)
        for row, metric in enumerate(metrics, start=1):
            fig.add_trace(
                go.Scatter(
                    x=part["step"],
                    y=part[metric],
                    mode="lines",
                    line=dict(color=palette.get(name, "#0072B2")),
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1 and by is not None,
                    hovertemplate=f"{name}<br>step %{{x:,}}<br>{value_label(metric)}: %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
            fig.update_yaxes(title_text=value_label(metric), row=row, col=1)
            if metric == "loss" and log_loss and (part.loc[:, metric] > 0).all():
                fig.update_yaxes(type="log", row=row, col=1)
            if metric in FRACTION_COLUMNS:
                fig.update_yaxes(tickformat=".0%", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(metrics), col=1)
    return apply_layout(fig, title, height=220 * len(metrics) + 120)
