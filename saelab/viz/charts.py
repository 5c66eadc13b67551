"""Generic charts for any tidy frame."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from saelab.viz.style import apply_layout, check_frame, check_numeric, sae_colors, unique_in_order, value_label


def grouped_bar(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    *,
    title: str,
    y_label: str | None = None,
    text_format: str = ".3g",
) -> go.Figure:
    """Bars of ``y`` per ``x`` (e.g. category), one group member per value of ``color`` (e.g.
    "masked" vs "naive"), values printed on the bars."""
    check_frame(frame, [x, y] + ([color] if color else []), "frame")
    check_numeric(frame, [y], "frame")
    groups = unique_in_order(frame[color]) if color else [None]
    palette = sae_colors([str(g) for g in groups]) if color else {}
    fig = go.Figure()
    for group in groups:
        part = frame if group is None else frame[frame[color] == group]
        fig.add_trace(
            go.Bar(
                x=[str(v) for v in part[x]],
                y=part[y].astype(float),
                name=str(group) if group is not None else y,
                marker_color=palette.get(str(group), "#4C78A8"),
                texttemplate="%{y:" + text_format + "}",
                textposition="outside",
                hovertemplate=f"{x}: %{{x}}<br>{y_label or value_label(y)}: %{{y:.4g}}<extra>{group or ''}</extra>",
            )
        )
    return apply_layout(fig, title, x=x, y=y_label or value_label(y), barmode="group", showlegend=color is not None)
