"""Figures of attribution: per position or per node (``Attribution.frame``), per input token
(``TokenAttribution``) and a feature circuit as a layered graph (``FeatureCircuit``).
Precomputed data in, ``go.Figure`` out; blue raises the metric, vermilion lowers it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab._util.hook_names import hook_layer
from saelab.viz.style import (
    AXIS_TOKEN_CHARS,
    apply_layout,
    check_frame,
    check_numeric,
    sae_colors,
    unique_in_order,
    visible_token,
)

if TYPE_CHECKING:
    from saelab.interventions.circuits import FeatureCircuit
    from saelab.interventions.embedding_attribution import TokenAttribution

POSITIVE = "#0072B2"
NEGATIVE = "#D55E00"
WIDTH_BINS = 4
"""Edge widths come in this many steps (one trace per step and sign keeps the figure light)."""


def sign_color(value: float) -> str:
    """Blue for a node or edge that raises the metric, vermilion for one that lowers it."""
    return POSITIVE if value >= 0 else NEGATIVE


def hook_label(hook: str) -> str:
    """``"L20"`` for ``blocks.20.hook_resid_pre`` (other hooks keep their suffix: ``"L3 attn_out"``)."""
    layer = hook_layer(hook)
    if layer is None:
        return hook
    suffix = hook.split(".", 2)[2].removeprefix("hook_")
    return f"L{layer}" if suffix == "resid_pre" else f"L{layer} {suffix}"


def _position_label(position: int, token: str | None) -> str:
    if token is None:
        return str(position)
    return f"{position} {visible_token(str(token), mark_spaces=True, max_len=AXIS_TOKEN_CHARS)}"


def attribution_bars(
    frame: pd.DataFrame,
    *,
    by: Literal["position", "node"] = "position",
    row: int = 0,
    top: int = 20,
    title: str | None = None,
) -> go.Figure:
    """Bars of ``Attribution.frame`` for one batch row.

    ``by="position"``: the total attribution at each position (features and error node), one
    bar group per hook, with the split and the strongest feature in the hover. ``by="node"``:
    the ``top`` nodes by ``|attribution|`` as horizontal bars coloured by sign.
    """
    check_frame(frame, ["hook", "position", "node", "feature", "attribution"], "frame")
    check_numeric(frame, ["attribution"], "frame")
    if by not in ("position", "node"):
        raise ValueError(f"by must be 'position' or 'node', got {by!r}")
    if "row" in frame.columns:
        rows = _col(frame, "row")
        if row not in set(rows.tolist()):
            raise ValueError(f"row {row} is not in the frame (rows {sorted(set(rows.tolist()))})")
        frame = frame.loc[rows == row]
    if by == "node":
        return _node_bars(frame, top, title or f"Top {top} nodes by |attribution|")
    return _position_bars(frame, title or "Attribution by position")


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame.loc[:, name].to_numpy()


def _top_by_abs(frame: pd.DataFrame, column: str, k: int) -> pd.DataFrame:
    order = np.argsort(-np.abs(_col(frame, column).astype(float)), kind="stable")
    return frame.iloc[order[:k]]


def _position_bars(frame: pd.DataFrame, title: str) -> go.Figure:
    hook_of, position_of, node_of = _col(frame, "hook"), _col(frame, "position").astype(int), _col(frame, "node")
    feature_of, value_of = _col(frame, "feature"), _col(frame, "attribution").astype(float)
    hooks = unique_in_order(hook_of)
    colors = sae_colors([hook_label(h) for h in hooks])
    positions = sorted(set(position_of.tolist()))
    token_at = dict(zip(position_of.tolist(), _col(frame, "token"), strict=True)) if "token" in frame.columns else {}
    labels = [_position_label(p, token_at.get(p)) for p in positions]
    fig = go.Figure()
    for hook in hooks:
        feats, errs = np.zeros(len(positions)), np.zeros(len(positions))
        best: dict[int, tuple[float, str]] = {}
        for i in np.flatnonzero(hook_of == hook):
            k = positions.index(int(position_of[i]))
            if node_of[i] == "error":
                errs[k] += value_of[i]
                continue
            feats[k] += value_of[i]
            if abs(value_of[i]) > abs(best.get(k, (0.0, ""))[0]):
                best[k] = (value_of[i], f"#{int(feature_of[i])} ({value_of[i]:+.3g})")
        fig.add_trace(
            go.Bar(
                x=labels,
                y=feats + errs,
                name=hook_label(hook),
                marker_color=colors[hook_label(hook)],
                customdata=np.column_stack([feats, errs, [best.get(k, (0, "none"))[1] for k in range(len(positions))]]),
                hovertemplate=(
                    "position %{x}<br>total: %{y:.4g}<br>features: %{customdata[0]:.4g}"
                    "<br>error: %{customdata[1]:.4g}<br>strongest feature: %{customdata[2]}"
                    f"<extra>{hook_label(hook)}</extra>"
                ),
            )
        )
    apply_layout(fig, title, x="position and token", y="attribution (metric change if removed)", barmode="group")
    fig.add_hline(y=0, line_color="#888888", line_width=1)
    return fig


def node_label(hook: str, node: str, feature: int, position: int, token: str | None = None) -> str:
    """A short readable node name: ``"L20 #123 @5 'Paris'"``, ``"L20 error @5"``."""
    where = "" if position < 0 else f" @{position}"
    if token:
        where += f" '{visible_token(str(token), mark_spaces=True, max_len=AXIS_TOKEN_CHARS)}'"
    what = "error" if node == "error" else f"#{int(feature)}"
    return f"{hook_label(hook)} {what}{where}"


def _node_bars(frame: pd.DataFrame, top: int, title: str) -> go.Figure:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    chosen = _top_by_abs(frame, "attribution", top).iloc[::-1]  # largest at the top of a horizontal bar chart
    tokens = _col(chosen, "token") if "token" in chosen.columns else [None] * len(chosen)
    columns = (_col(chosen, c) for c in ("hook", "node", "feature", "position"))
    labels = [node_label(h, n, f, p, t) for h, n, f, p, t in zip(*columns, tokens, strict=True)]
    values = _col(chosen, "attribution").astype(float)
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=[sign_color(v) for v in values],
            hovertemplate="%{y}<br>attribution: %{x:.4g}<extra></extra>",
            name="attribution",
        )
    )
    apply_layout(
        fig, title, x="attribution (metric change if removed)", y="node", height=max(350, 22 * len(chosen) + 150)
    )
    fig.add_vline(x=0, line_color="#888888", line_width=1)
    return fig


def token_attribution_figure(result: TokenAttribution, *, title: str | None = None) -> go.Figure:
    """Gradient x embedding and occlusion side by side for each input token of a
    :class:`~saelab.interventions.TokenAttribution`; their correlations in the title."""
    frame = result.frame
    check_frame(frame, ["position", "token", "gradient_x_embedding", "occlusion"], "result.frame")
    check_numeric(frame, ["gradient_x_embedding", "occlusion"], "result.frame")
    labels = [_position_label(int(p), t) for p, t in zip(frame["position"], frame["token"], strict=True)]
    fig = go.Figure()
    for column, name, color in (
        ("gradient_x_embedding", "gradient × embedding", "#56B4E9"),
        ("occlusion", "occlusion (exact)", "#E69F00"),
    ):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=frame[column].to_numpy(dtype=float),
                name=name,
                marker_color=color,
                hovertemplate=f"token %{{x}}<br>{name}: %{{y:.4g}}<extra></extra>",
            )
        )
    target = visible_token(result.tokens[result.position], mark_spaces=True, max_len=AXIS_TOKEN_CHARS)
    default = (
        f"What drives {hook_label(result.hook)} #{result.feature} at {result.position} {target} "
        f"(activation {result.activation:.3g}); Pearson {result.pearson:.2f}, Spearman {result.spearman:.2f}"
    )
    apply_layout(fig, title or default, x="input token", y="feature change if the token is removed", barmode="group")
    fig.add_hline(y=0, line_color="#888888", line_width=1)
    return fig


def _node_coordinates(nodes: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """x = the node's column (hook, metric last); y = rank within the column, features by
    attribution from the top, the error node at the bottom, each column centred on 0."""
    names, layers, kinds = _col(nodes, "node"), _col(nodes, "layer").astype(int), _col(nodes, "kind")
    values = _col(nodes, "attribution").astype(float)
    coords: dict[str, tuple[float, float]] = {}
    for layer in sorted(set(layers.tolist())):
        members = np.flatnonzero(layers == layer)
        feats = [i for i in members[np.argsort(-values[members], kind="stable")] if kinds[i] == "feature"]
        ordered = feats + [i for i in members if kinds[i] != "feature"]
        for rank, i in enumerate(ordered):
            coords[str(names[i])] = (float(layer), (len(ordered) - 1) / 2 - rank)
    return coords


def _edge_traces(edges: pd.DataFrame, coords: dict[str, tuple[float, float]]) -> list[go.Scatter]:
    """Edges as lines, one trace per sign and width step (``1 + 2 * step`` pixels, by
    ``|weight|`` relative to the strongest edge)."""
    sources, targets = _col(edges, "source"), _col(edges, "target")
    weights = _col(edges, "weight").astype(float)
    scale = float(np.abs(weights).max()) or 1.0
    steps = np.minimum(WIDTH_BINS - 1, (np.abs(weights) / scale * WIDTH_BINS).astype(int))
    traces = []
    for positive, color, name in ((True, POSITIVE, "raise"), (False, NEGATIVE, "lower")):
        signed = weights >= 0 if positive else weights < 0
        for step in range(WIDTH_BINS - 1, -1, -1):
            chosen = np.flatnonzero(signed & (steps == step))
            if not len(chosen):
                continue
            xs: list[float | None] = []
            ys: list[float | None] = []
            for i in chosen:
                (x0, y0), (x1, y1) = coords[str(sources[i])], coords[str(targets[i])]
                xs += [x0, x1, None]
                ys += [y0, y1, None]
            traces.append(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line=dict(color=color, width=1 + 2 * step),
                    opacity=0.55,
                    hoverinfo="skip",
                    name=f"edges that {name} the metric",
                    legendgroup=name,
                    showlegend=not any(t.legendgroup == name for t in traces),
                )
            )
    return traces


def _check_circuit(nodes: pd.DataFrame, edges: pd.DataFrame, max_edges: int) -> None:
    check_frame(nodes, ["node", "hook", "layer", "kind", "feature", "position", "attribution"], "circuit.nodes")
    check_numeric(nodes, ["attribution"], "circuit.nodes")
    if not isinstance(edges, pd.DataFrame) or not {"source", "target", "weight"} <= set(edges.columns):
        raise ValueError("circuit.edges must be a DataFrame with columns source, target and weight")
    check_numeric(edges, ["weight"], "circuit.edges")
    if isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 0:
        raise ValueError(f"max_edges must be a non-negative integer, got {max_edges!r}")
    unknown = (set(_col(edges, "source")) | set(_col(edges, "target"))) - set(_col(nodes, "node"))
    if unknown:
        raise ValueError(f"edges refer to nodes that circuit.nodes lacks: {sorted(map(str, unknown))[:5]}")


def _node_trace(nodes: pd.DataFrame, kind: str, coords: dict[str, tuple[float, float]], scale: float) -> go.Scatter:
    part = nodes.loc[_col(nodes, "kind") == kind]
    values = _col(part, "attribution").astype(float)
    tokens = _col(part, "token") if "token" in part.columns else [None] * len(part)
    columns = (_col(part, c) for c in ("hook", "feature", "position"))
    labels = [
        "metric" if kind == "metric" else node_label(h, kind, f, p, t)
        for h, f, p, t in zip(*columns, tokens, strict=True)
    ]
    names = [str(n) for n in _col(part, "node")]
    symbol = {"feature": "circle", "error": "square"}.get(kind, "diamond")
    return go.Scatter(
        x=[coords[n][0] for n in names],
        y=[coords[n][1] for n in names],
        mode="markers+text",
        text=[label.split(" ", 1)[-1] for label in labels],
        textposition="middle right",
        textfont=dict(size=11),
        marker=dict(
            symbol=symbol,
            size=18 if kind == "metric" else 10 + 26 * np.abs(values) / scale,
            color=["#444444" if kind == "metric" else sign_color(v) for v in values],
            line=dict(color="white", width=1),
        ),
        customdata=np.column_stack([labels, values]),
        hovertemplate="%{customdata[0]}<br>attribution: %{customdata[1]:.4g}<extra></extra>",
        name=f"{kind} nodes",
    )


def circuit_figure(circuit: FeatureCircuit, *, max_edges: int = 150, title: str | None = None) -> go.Figure:
    """A :class:`~saelab.interventions.FeatureCircuit` as a layered graph: one column per hook
    (then the metric), feature nodes (circles) and error nodes (squares) sized by
    ``|attribution|`` and coloured by its sign, and the ``max_edges`` strongest edges coloured
    by sign, wider for larger ``|weight|``."""
    nodes, edges = circuit.nodes, circuit.edges
    _check_circuit(nodes, edges, max_edges)
    coords = _node_coordinates(nodes)
    strongest = _top_by_abs(edges, "weight", max_edges)
    fig = go.Figure(_edge_traces(strongest, coords) if len(strongest) else [])
    kinds = _col(nodes, "kind")
    sized = np.abs(_col(nodes, "attribution").astype(float))[kinds != "metric"]
    scale = float(sized.max()) if len(sized) and sized.max() > 0 else 1.0
    for kind in ("feature", "error", "metric"):
        if (kinds == kind).any():
            fig.add_trace(_node_trace(nodes, kind, coords, scale))
    hook_at = {int(layer): str(hook) for layer, hook in zip(_col(nodes, "layer"), _col(nodes, "hook"), strict=True)}
    ticks = [hook_label(hook_at[i]) if hook_at[i] else "metric" for i in sorted(hook_at)]
    default = f"Feature circuit ({len(nodes)} nodes, the {len(strongest)} strongest edges)"
    apply_layout(fig, title or default, height=650)
    # Room on the right for the last column's labels.
    fig.update_xaxes(
        tickvals=sorted(hook_at), ticktext=ticks, range=[-0.3, max(hook_at) + 0.7], showgrid=False, zeroline=False
    )
    fig.update_yaxes(visible=False)
    return fig
