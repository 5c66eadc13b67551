"""Figures about features: heatmaps over texts, ranking bars, category means, the logit
lens and co-activation. Precomputed data in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import (
    AXIS_TOKEN_CHARS,
    FRACTION_COLUMNS,
    apply_layout,
    as_finite_array,
    category_color,
    check_frame,
    check_numeric,
    short_label,
    unique_in_order,
    value_label,
    visible_token,
)

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor


def feature_heatmap(
    matrix: Float[Tensor | np.ndarray, "n_texts n_feats"],
    text_labels: Sequence[str],
    feature_ids: Sequence[int],
    categories: Sequence[str] | None = None,
    *,
    title: str = "Feature activations per text",
    value: str = "activation",
) -> go.Figure:
    """Texts (rows) × features (columns) heatmap, with a category colour strip when given.

    Rows are placed by index (not by label), so two texts with the same label stay apart;
    the hover shows the whole label, the axis a shortened one.
    """
    z = as_finite_array(matrix, "matrix", ndim=2)
    n_texts, n_feats = z.shape
    if len(text_labels) != n_texts:
        raise ValueError(f"text_labels has {len(text_labels)} entries but matrix has {n_texts} rows")
    if len(feature_ids) != n_feats:
        raise ValueError(f"feature_ids has {len(feature_ids)} entries but matrix has {n_feats} columns")
    if categories is not None and len(categories) != n_texts:
        raise ValueError(f"categories has {len(categories)} entries but matrix has {n_texts} rows")
    rows = np.arange(n_texts)
    x = [f"#{int(f)}" for f in feature_ids]
    labels = np.array([str(t) for t in text_labels], dtype=object)
    heat = go.Heatmap(
        z=z,
        x=x,
        y=rows,
        colorscale="Oranges",
        zmin=0.0 if z.min() >= 0 else None,
        colorbar=dict(title=dict(text=value)),
        customdata=np.broadcast_to(labels[:, None], z.shape),
        hovertemplate="text: %{customdata}<br>feature %{x}<br>" + value + ": %{z:.3g}<extra></extra>",
        name="activations",
    )
    ticks: dict[str, Any] = dict(
        tickmode="array", tickvals=rows, ticktext=[short_label(t) for t in labels], autorange="reversed"
    )
    if categories is None:
        fig = go.Figure(heat)
        fig.update_yaxes(**ticks)
        height = max(350, 22 * n_texts + 140)
        return apply_layout(fig, title, x="feature", y="text", height=height)

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.04, 0.96], horizontal_spacing=0.01)
    fig.add_trace(_category_strip(list(categories), rows), row=1, col=1)
    fig.add_trace(heat, row=1, col=2)
    fig.update_yaxes(**ticks, row=1, col=1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(title_text="feature", row=1, col=2)
    fig.update_yaxes(title_text="text", row=1, col=1)
    return apply_layout(fig, title, height=max(350, 22 * n_texts + 140))


def _category_strip(categories: list[str], rows: np.ndarray) -> go.Heatmap:
    """One-column heatmap whose cells take each row's category colour (a discrete colorscale)."""
    names = unique_in_order(categories)
    index = {c: i for i, c in enumerate(names)}
    k = len(names)
    # Each category owns the band [i/k, (i+1)/k] of the colorscale, so cell value i + 0.5
    # normalised by k always lands inside its own band.
    scale = []
    for i, name in enumerate(names):
        scale += [[i / k, category_color(name)], [(i + 1) / k, category_color(name)]]
    return go.Heatmap(
        z=[[index[c] + 0.5] for c in categories],
        y=rows,
        x=["category"],
        zmin=0,
        zmax=k,
        colorscale=scale,
        showscale=False,
        customdata=[[c] for c in categories],
        hovertemplate="category: %{customdata}<extra></extra>",
        name="category",
    )


def top_features_bar(
    frame: pd.DataFrame,
    value: str = "max_activation",
    by: str | None = "sae",
    *,
    title: str | None = None,
) -> go.Figure:
    """Bars of a ranking (``strongest``/``frequent``/... frames): one bar per ranked feature.

    With ``by="sae"`` (a long frame with an ``sae`` column, e.g. ``LayerComparison.strongest``)
    the bars are grouped by SAE, one trace per rank, each bar labelled with its feature id.
    With ``by=None`` it is one ranking, bars in rank order.
    """
    required = ["rank", "feature", value] + ([by] if by else [])
    check_frame(frame, required, "frame")
    check_numeric(frame, [value], "frame")
    label = value_label(value)
    fmt = ".1%" if value in FRACTION_COLUMNS else ".3g"
    if by is None:
        fig = _one_ranking(frame, value, label, fmt)
        apply_layout(fig, title or f"Top features by {label}", x="feature", y=label)
    else:
        fig = _rankings_by_group(frame, value, by, label, fmt)
        by_label = "SAE" if by == "sae" else by
        apply_layout(
            fig,
            title or f"Top features by {label}, per {by_label}",
            x=by_label,
            y=label,
            barmode="group",
            legend_title_text="rank",
            uniformtext=dict(minsize=9, mode="show"),
        )
    if value in FRACTION_COLUMNS:
        fig.update_yaxes(tickformat=".0%")
    return fig


def _one_ranking(frame: pd.DataFrame, value: str, label: str, fmt: str) -> go.Figure:
    ordered = frame.sort_values("rank")
    return go.Figure(
        go.Bar(
            x=[f"#{int(f)}" for f in ordered["feature"]],
            y=ordered[value],
            customdata=ordered["rank"],
            marker_color="#E8710A",
            hovertemplate=f"feature %{{x}} (rank %{{customdata}})<br>{label}: %{{y:{fmt}}}<extra></extra>",
            name=label,
        )
    )


def _rankings_by_group(frame: pd.DataFrame, value: str, by: str, label: str, fmt: str) -> go.Figure:
    """One trace per rank, bars grouped by ``by``, each labelled with its feature id."""
    if frame.duplicated([by, "rank"]).any():
        raise ValueError(f"frame has several rows with the same ({by}, rank); expected one per {by} and rank")
    groups = unique_in_order(frame[by])
    ranks = sorted(frame["rank"].unique())
    fig = go.Figure()
    for rank, shade in zip(ranks, _rank_shades(len(ranks)), strict=True):
        part = frame[frame["rank"] == rank].set_index(by).reindex(groups).dropna(subset=["feature"])
        fig.add_trace(
            go.Bar(
                x=list(part.index),
                y=part[value],
                text=[f"#{int(f)}" for f in part["feature"]],
                textposition="outside",
                textangle=-90,
                cliponaxis=False,
                customdata=part["feature"].astype(int),
                marker_color=shade,
                name=f"rank {int(rank)}",
                hovertemplate=(
                    f"{by}: %{{x}} · rank {int(rank)}<br>feature #%{{customdata}}<br>"
                    f"{label}: %{{y:{fmt}}}<extra></extra>"
                ),
            )
        )
    return fig


def _rank_shades(n: int) -> list[str]:
    """Dark (rank 1) to light orange, so the eye reads the ranking within each group."""
    from plotly.colors import sample_colorscale

    points = [0.95] if n == 1 else [0.95 - 0.6 * i / (n - 1) for i in range(n)]
    # cast: with the default colortype "rgb", plotly returns a list of "rgb(r, g, b)" strings.
    return cast(list[str], sample_colorscale("Oranges", points))


def category_bar(
    category_means: pd.DataFrame, *, highlight: str | None = None, title: str = "Mean activation by category"
) -> go.Figure:
    """Mean activation per category (``FeatureSummary.category_means``), in category colours.

    ``highlight`` outlines one category (e.g. the one a specialist is meant to detect).
    """
    check_frame(category_means, ["category", "mean", "frac_active"], "category_means")
    check_numeric(category_means, ["mean", "frac_active"], "category_means")
    cats = [str(c) for c in category_means["category"]]
    if highlight is not None and highlight not in cats:
        raise ValueError(f"highlight={highlight!r} is not one of the categories {cats}")
    fig = go.Figure(
        go.Bar(
            x=cats,
            y=category_means["mean"],
            customdata=category_means["frac_active"],
            marker=dict(
                color=[category_color(c) for c in cats],
                line=dict(color="black", width=[3 if c == highlight else 0 for c in cats]),
            ),
            hovertemplate=(
                "category: %{x}<br>mean activation: %{y:.3g}<br>active on %{customdata:.0%} of its texts<extra></extra>"
            ),
            name="mean activation",
        )
    )
    return apply_layout(fig, title, x="category", y="mean activation")


def logit_lens_bar(
    logit_lens: pd.DataFrame, *, title: str = "Logit lens: tokens this feature promotes and suppresses"
) -> go.Figure:
    """Two panels of horizontal bars: the tokens a feature's decoder direction promotes / suppresses.

    Rows are placed by rank (not by token text), so two tokens that print alike stay apart.
    """
    check_frame(logit_lens, ["direction", "rank", "token", "token_id", "logit"], "logit_lens")
    check_numeric(logit_lens, ["logit"], "logit_lens")
    unknown = set(logit_lens["direction"]) - {"promoted", "suppressed"}
    if unknown:
        raise ValueError(f"logit_lens has unknown directions {sorted(unknown)}; valid: 'promoted', 'suppressed'")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("promoted", "suppressed"), horizontal_spacing=0.2)
    for col, (direction, color) in enumerate((("promoted", "#2E7D32"), ("suppressed", "#C62828")), start=1):
        part = logit_lens.loc[logit_lens["direction"] == direction].sort_values("rank")
        full = [visible_token(str(t), mark_spaces=True) for t in part["token"]]
        shown = [visible_token(str(t), mark_spaces=True, max_len=AXIS_TOKEN_CHARS) for t in part["token"]]
        fig.add_trace(
            go.Bar(
                x=part["logit"],
                y=part["rank"],
                orientation="h",
                marker_color=color,
                customdata=np.stack([full, part["token_id"].astype(int)], axis=1) if len(part) else None,
                hovertemplate="token %{customdata[0]} (id %{customdata[1]})<br>logit: %{x:.3g}<extra></extra>",
                name=direction,
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(
            tickmode="array", tickvals=list(part["rank"]), ticktext=shown, autorange="reversed", row=1, col=col
        )
        fig.update_xaxes(title_text="logit contribution", row=1, col=col)
    return apply_layout(fig, title, height=max(300, 26 * int(logit_lens.loc[:, "rank"].max()) + 140))


def coactivation_heatmap(
    matrix: pd.DataFrame, *, title: str = "Co-activation (Jaccard) of frequent features", value: str = "Jaccard"
) -> go.Figure:
    """Features × features heatmap of ``CoActivation.matrix`` (symmetric; the diagonal is 1)."""
    if not isinstance(matrix, pd.DataFrame) or matrix.empty or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("matrix must be a non-empty square DataFrame, e.g. CoActivation.matrix")
    z = as_finite_array(matrix.to_numpy(dtype=float), "matrix", ndim=2)
    labels = [f"#{f}" for f in matrix.index]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar=dict(title=dict(text=value, side="right")),
            hovertemplate="%{y} and %{x}<br>" + value + ": %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=-45)
    size = max(420, 28 * len(labels) + 180)
    return apply_layout(fig, title, x="feature", y="feature", height=size, width=size + 120)
