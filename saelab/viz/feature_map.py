"""The 2-D map of an SAE's decoder directions (:func:`saelab.evolution.feature_map`), as a
scatter plot: one point per feature, coloured by a category, a cluster or a number such as
density, with the feature's id, top tokens and explanation on hover.

Precomputed points in (a DataFrame with ``feature, x, y`` and any columns to colour or show),
``go.Figure`` out. It exports with :func:`saelab.viz.save_figure` (PNG/SVG) and to one
standalone page with ``fig.write_html(path, include_plotlyjs=True)`` (offline: plotly.js inlined).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab.viz.style import (
    CATEGORY_COLORS,
    apply_layout,
    category_color,
    check_frame,
    check_numeric,
    short_label,
    value_label,
    visible_token,
)

BACKGROUND = ("none", "")
"""Category values drawn as the grey background (features with no category)."""
BACKGROUND_COLOR = "#C8C8C8"
HOVER_COLUMNS = ("category", "cluster", "density", "top_tokens", "explanation")
"""Columns shown on hover by default, when the points have them."""
WEBGL_ABOVE = 10_000  # SVG markers stay responsive below this; WebGL beyond
MAX_COLOR_VALUES = 60  # one legend entry per value: beyond this a legend is unreadable
_HOVER_CHARS = 90  # explanations are cut to this on hover (plotly does not wrap hover text)


def feature_map_figure(
    points: pd.DataFrame,
    *,
    color: str | None = "category",
    hover: Sequence[str] | None = None,
    cluster_labels: Mapping[int, str] | pd.DataFrame | None = None,
    log_color: bool | None = None,
    method: str | None = "umap",
    title: str = "Map of the SAE's decoder directions",
    webgl: bool | None = None,
) -> go.Figure:
    """Scatter of ``points`` (``feature, x, y`` and optional columns such as ``category``,
    ``cluster``, ``density``, ``top_tokens``, ``explanation``).

    ``color``: a column. Text and integer columns (``category``, ``cluster``) give one trace
    per value with its own legend entry (dataset categories keep their colours everywhere;
    ``"none"`` is a grey background); float columns (``density``) a colour scale, logarithmic
    when ``log_color`` (default: when the positive values span 2 decades or more; zeros are
    then drawn grey as "0"). None: one colour.
    ``hover``: columns shown on hover after the feature id (default: those of
    :data:`HOVER_COLUMNS` present). ``cluster_labels``: text per cluster id written at each
    cluster's median position (a mapping, or :func:`saelab.evolution.cluster_top_tokens`'s
    frame); needs a ``cluster`` column. ``method`` names the axes (UMAP's have no units).
    """
    check_frame(points, ["feature", "x", "y"], "points")
    check_numeric(points, ["x", "y"], "points")
    if points["feature"].duplicated().any():
        raise ValueError("points has duplicate feature ids; one row per feature")
    if color is not None and color not in points:
        raise ValueError(f"color column {color!r} is not in points; it has {list(points.columns)}")
    shown = [c for c in HOVER_COLUMNS if c in points] if hover is None else list(hover)
    missing = [c for c in shown if c not in points]
    if missing:
        raise ValueError(f"hover columns {missing} are not in points; it has {list(points.columns)}")
    if color is not None and color not in shown:
        shown.insert(0, color)
    text = np.asarray(hover_text(points, shown), dtype=object)
    use_webgl = len(points) > WEBGL_ABOVE if webgl is None else webgl
    if color is None:
        traces = [_trace(points, np.ones(len(points), dtype=bool), text, "features", "#0072B2", use_webgl)]
    elif _is_continuous(points[color], color):
        traces = _continuous_traces(points, text, color, log_color, use_webgl)
    else:
        traces = _categorical_traces(points, text, color, cluster_labels, use_webgl)
    fig = go.Figure(traces)
    if cluster_labels is not None:
        _annotate_clusters(fig, points, cluster_labels)
    axis = (method or "").upper()
    apply_layout(fig, title, x=f"{axis} 1" if axis else "x", y=f"{axis} 2" if axis else "y", width=950, height=720)
    fig.update_layout(legend=dict(itemsizing="constant"))
    if color is not None and _is_continuous(points[color], color):  # the legend above, clear of the colour bar
        fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    if axis == "UMAP":  # UMAP coordinates have no meaning of their own: no tick labels
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False)
    return fig


def hover_text(points: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """One hover block per point: ``feature #id`` then ``name: value`` per column."""
    parts = [[f"<b>feature #{int(f)}</b>"] for f in points["feature"]]
    for column in columns:
        label = value_label(column)
        for lines, value in zip(parts, points[column], strict=True):
            lines.append(f"{label}: {_hover_value(column, value)}")
    return ["<br>".join(lines) for lines in parts]


def _hover_value(column: str, value: Any) -> str:
    if isinstance(value, list | tuple | np.ndarray):
        tokens = [visible_token(str(t), mark_spaces=True, max_len=24) for t in value]
        return html.escape(", ".join(tokens), quote=False) if tokens else "–"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.3g}"
    return html.escape(short_label(str(value), _HOVER_CHARS), quote=False)  # plotly reads hover text as HTML


def _trace(
    points: pd.DataFrame,
    mask: np.ndarray,
    text: np.ndarray,
    name: str,
    color: Any,
    webgl: bool,
    *,
    showlegend: bool = True,
    **marker: Any,
) -> Any:
    """One marker trace of the rows of ``points`` where ``mask`` is True."""
    scatter = go.Scattergl if webgl else go.Scatter
    return scatter(
        x=points["x"].to_numpy(dtype=float)[mask],
        y=points["y"].to_numpy(dtype=float)[mask],
        mode="markers",
        name=name,
        text=list(text[mask]),
        customdata=points["feature"].to_numpy()[mask],
        hovertemplate="%{text}<extra></extra>",
        showlegend=showlegend,
        marker=dict(color=color, size=marker.pop("size", 5), opacity=marker.pop("opacity", 0.8), **marker),
    )


def _is_continuous(values: Any, column: str) -> bool:
    # A cluster id stays a category even when missing ids made the column float.
    return column != "cluster" and pd.api.types.is_float_dtype(values)


def _categorical_traces(
    points: pd.DataFrame,
    text: np.ndarray,
    column: str,
    cluster_labels: Mapping[int, str] | pd.DataFrame | None,
    webgl: bool,
) -> list[Any]:
    values = points[column].astype(object).where(points[column].notna(), "none")
    if any(isinstance(v, list | tuple | np.ndarray) for v in values):
        raise ValueError(f"points[{column!r}] holds lists; colour by a column of single values")
    names = np.asarray([str(v) for v in values], dtype=object)
    n_distinct = len(set(names.tolist()))
    if n_distinct > MAX_COLOR_VALUES:
        raise ValueError(
            f"points[{column!r}] has {n_distinct} distinct values, too many to colour as categories "
            f"(at most {MAX_COLOR_VALUES}); colour by a float column for a colour scale, or by fewer groups"
        )
    order = _value_order(values)
    colors = _colors_for(order)
    labels = _cluster_texts(cluster_labels) if column == "cluster" else {}
    traces = []
    for value in order:
        mask = names == str(value)
        name = str(value) if value not in labels else f"{value}: {labels[value]}"
        if str(value) in BACKGROUND:  # background first and faint, so real categories sit on top
            traces.append(_trace(points, mask, text, name, BACKGROUND_COLOR, webgl, size=4, opacity=0.5))
        else:
            traces.append(_trace(points, mask, text, name, colors[value], webgl, size=6))
    return traces


def _value_order(values: Any) -> list[Any]:
    """Background first, then dataset categories in their usual order, then the rest sorted."""
    distinct = list(dict.fromkeys(values))
    background = [v for v in distinct if str(v) in BACKGROUND]
    known = [c for c in CATEGORY_COLORS if c in distinct]
    rest = sorted((v for v in distinct if v not in known and str(v) not in BACKGROUND), key=_sort_key)
    return background + known + rest


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | np.integer | float) else (1, str(value))


def _colors_for(values: Sequence[Any]) -> dict[Any, str]:
    """Dataset categories keep their colours; other values take a qualitative palette in order."""
    from plotly.colors import qualitative

    palette = list(qualitative.Dark24) + list(qualitative.Light24)
    others = [v for v in values if str(v) not in CATEGORY_COLORS and str(v) not in BACKGROUND]
    colors = {v: palette[i % len(palette)] for i, v in enumerate(others)}
    colors.update({v: category_color(str(v)) for v in values if str(v) in CATEGORY_COLORS})
    return colors


def _continuous_traces(
    points: pd.DataFrame, text: np.ndarray, column: str, log_color: bool | None, webgl: bool
) -> list[Any]:
    values = points[column].to_numpy(dtype=float)
    if np.isnan(values).any():
        raise ValueError(f"points[{column!r}] has missing values; fill them or colour by another column")
    positive = values[values > 0]
    if log_color is None:
        log_color = bool((values >= 0).all() and positive.size and positive.max() >= 100 * positive.min())
    if log_color and (values < 0).any():
        raise ValueError(f"log_color needs points[{column!r}] >= 0, got a minimum of {values.min():.3g}")
    label = value_label(column)
    shown = values > 0 if log_color else np.ones(len(values), dtype=bool)
    traces = []
    if log_color and (~shown).any():
        traces.append(_trace(points, ~shown, text, f"{label} = 0", BACKGROUND_COLOR, webgl, size=4))
    scale = np.log10(values[shown]) if log_color else values[shown]
    colorbar: dict[str, Any] = dict(title=dict(text=f"{label} (log scale)" if log_color else label, side="right"))
    if log_color and scale.size:
        ticks = np.arange(np.floor(scale.min()), np.ceil(scale.max()) + 1)
        colorbar.update(tickvals=ticks.tolist(), ticktext=[f"10<sup>{int(t)}</sup>" for t in ticks])
    traces.append(
        _trace(points, shown, text, label, scale, webgl, size=6,
               colorscale="Viridis", showscale=True, colorbar=colorbar, showlegend=False)
    )  # fmt: skip
    return traces


def _cluster_texts(cluster_labels: Mapping[int, str] | pd.DataFrame | None) -> dict[Any, str]:
    if cluster_labels is None:
        return {}
    if isinstance(cluster_labels, pd.DataFrame):
        check_frame(cluster_labels, ["cluster", "top_tokens"], "cluster_labels")
        return {
            cluster: html.escape(", ".join(visible_token(str(t), mark_spaces=True, max_len=14) for t in tokens[:3]))
            for cluster, tokens in zip(cluster_labels["cluster"], cluster_labels["top_tokens"], strict=True)
        }
    if not isinstance(cluster_labels, Mapping):
        raise ValueError(f"cluster_labels must be a mapping or a DataFrame, got {type(cluster_labels).__name__}")
    return {cluster: html.escape(str(label)) for cluster, label in cluster_labels.items()}


def _annotate_clusters(fig: go.Figure, points: pd.DataFrame, cluster_labels: Mapping[int, str] | pd.DataFrame) -> None:
    """Each cluster's label at the median of its points (a centroid that no outlier drags)."""
    if "cluster" not in points:
        raise ValueError("cluster_labels needs a 'cluster' column in points")
    texts = _cluster_texts(cluster_labels)
    centres = points.groupby("cluster")[["x", "y"]].median()
    for cluster, row in centres.iterrows():
        label = texts.get(cast(Any, cluster))
        if label is None:
            continue
        fig.add_annotation(
            x=row["x"], y=row["y"], text=f"<b>{cluster}</b>: {label}", showarrow=False,
            font=dict(size=11, color="#222222"), bgcolor="rgba(255,255,255,0.75)",
        )  # fmt: skip
