"""Plotly figure builders: precomputed data in, ``go.Figure`` out, plus ``save_figure``.

Every builder takes what ``saelab.analysis`` / ``saelab.evals`` / ``saelab.extract`` computed
(DataFrames, arrays, dataclasses) and never runs the model, so tests can feed hand-made data
and assert on ``fig.data`` / ``fig.layout`` without displaying anything. Figures share one
look: the ``plotly_white`` template, a title, labelled axes, and a hovertemplate on every
trace. A category has the same colour in every figure (:data:`CATEGORY_COLORS`).

Static export goes through kaleido 1.x, which drives a system Chromium; it never downloads a
browser, plotly.js or MathJax (see :func:`save_figure`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.browser import INSTALL_HINT, find_chromium

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

    from saelab.extract import DenseVsSparse

log = logging.getLogger(__name__)

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), with grey
# instead of the hard-to-read yellow.
CATEGORY_COLORS: dict[str, str] = {
    "python": "#0072B2",
    "urls": "#56B4E9",
    "math": "#D55E00",
    "non_english": "#009E73",
    "social": "#CC79A7",
    "formal": "#E69F00",
    "conversational": "#666666",
}
"""One colour per dataset category, shared by every figure and widget."""

_EXTRA_COLORS = ("#8C564B", "#17BECF", "#BCBD22", "#1F77B4", "#9467BD", "#2CA02C", "#D62728")

TEMPLATE = "plotly_white"

# Readable axis / hover names for the columns saelab.analysis returns.
VALUE_LABELS: dict[str, str] = {
    "max_activation": "max activation",
    "mean_activation": "mean activation",
    "frequency": "share of texts where active",
    "frac_active": "share of texts where active",
    "frac_examples_active": "share of examples where active",
    "n_active": "texts where active",
    "mean_when_active": "mean activation when active",
    "score": "score",
    "seed_score": "specialist score (strong in − strong out)",
    "auroc": "AUROC",
    "effect_size": "effect size (Cliff's δ)",
    "mean": "mean activation",
    "l0": "L0 (active features per token)",
    "explained_variance": "explained variance",
    "loss": "loss",
}
_FRACTION_COLUMNS = {"frequency", "frac_active", "frac_examples_active", "explained_variance"}

ExportFormat = Literal["png", "svg", "pdf", "jpg", "jpeg", "webp"]
_EXPORT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp")


# ---------------------------------------------------------------------------------------
# Colours and labels.


def category_color(category: str) -> str:
    """The colour of ``category``; unknown names get a stable colour from a spare palette."""
    if category in CATEGORY_COLORS:
        return CATEGORY_COLORS[category]
    # Stable across runs (unlike hash()), so a custom category keeps its colour everywhere.
    return _EXTRA_COLORS[sum(map(ord, category)) % len(_EXTRA_COLORS)]


def sae_colors(names: Sequence[str]) -> dict[str, str]:
    """Colours for SAEs given in layer order: a sequential (viridis) ramp, shallow to deep."""
    from plotly.colors import sample_colorscale

    if not names:
        return {}
    points = [0.5] if len(names) == 1 else [0.85 * i / (len(names) - 1) for i in range(len(names))]
    return dict(zip(names, sample_colorscale("Viridis", points), strict=True))


def value_label(column: str) -> str:
    """Human-readable name of an analysis column (falls back to the column name)."""
    return VALUE_LABELS.get(column, column.replace("_", " "))


AXIS_TOKEN_CHARS = 14
"""Longest token label on an axis: BPE vocabularies hold tokens such as a run of 64 "=",
which would push the plot itself off the figure. Hover text keeps the whole token."""


def visible_token(token: str, *, mark_spaces: bool = False, max_len: int | None = None) -> str:
    """A token as text a reader can see: newlines as ⏎, tabs as ⇥, a blank token as ␣.

    ``mark_spaces=True`` shows every space as ␣ (for axis labels, where a leading space would
    be invisible); otherwise spaces stay spaces so highlighted text reads naturally.
    ``max_len`` cuts longer results to that many characters, the last one an ellipsis.
    """
    shown = token.replace("\r", "␍").replace("\n", "⏎").replace("\t", "⇥")
    if mark_spaces or not shown.strip():
        shown = shown.replace(" ", "␣")
    if max_len is not None and len(shown) > max_len:
        shown = shown[: max(1, max_len - 1)] + "…"
    return shown or "∅"


# ---------------------------------------------------------------------------------------
# Input checks.


def as_finite_array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """A float64 array from a torch tensor, numpy array or nested list; empty input and NaN/inf
    are rejected with a ValueError naming ``name``."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; drop or fill those values first")
    return arr


def _check_frame(frame: pd.DataFrame, required: Iterable[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{name} is empty")


def _check_numeric(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    for column in columns:
        as_finite_array(frame[column].to_numpy(dtype=float), f"{name}[{column!r}]")


def _unique_in_order(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _layout(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, **extra: Any) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0.02, xanchor="left"),
        font=dict(size=13),
        margin=dict(l=70, r=30, t=70, b=60),
        hoverlabel=dict(align="left"),
        **extra,
    )
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    return fig


def _short(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------
# Feature exploration (notebook 02).


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
    ticks = dict(tickmode="array", tickvals=rows, ticktext=[_short(t) for t in labels], autorange="reversed")
    if categories is None:
        fig = go.Figure(heat)
        fig.update_yaxes(**ticks)
        height = max(350, 22 * n_texts + 140)
        return _layout(fig, title, x="feature", y="text", height=height)

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.04, 0.96], horizontal_spacing=0.01)
    fig.add_trace(_category_strip(list(categories), rows), row=1, col=1)
    fig.add_trace(heat, row=1, col=2)
    fig.update_yaxes(**ticks, row=1, col=1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(title_text="feature", row=1, col=2)
    fig.update_yaxes(title_text="text", row=1, col=1)
    return _layout(fig, title, height=max(350, 22 * n_texts + 140))


def _category_strip(categories: list[str], rows: np.ndarray) -> go.Heatmap:
    """One-column heatmap whose cells take each row's category colour (a discrete colorscale)."""
    names = _unique_in_order(categories)
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
    _check_frame(frame, required, "frame")
    _check_numeric(frame, [value], "frame")
    label = value_label(value)
    fmt = ".1%" if value in _FRACTION_COLUMNS else ".3g"
    if by is None:
        ordered = frame.sort_values("rank")
        fig = go.Figure(
            go.Bar(
                x=[f"#{int(f)}" for f in ordered["feature"]],
                y=ordered[value],
                customdata=ordered["rank"],
                marker_color="#E8710A",
                hovertemplate=f"feature %{{x}} (rank %{{customdata}})<br>{label}: %{{y:{fmt}}}<extra></extra>",
                name=label,
            )
        )
        _layout(fig, title or f"Top features by {label}", x="feature", y=label)
    else:
        if frame.duplicated([by, "rank"]).any():
            raise ValueError(f"frame has several rows with the same ({by}, rank); expected one per {by} and rank")
        groups = _unique_in_order(frame[by])
        ranks = sorted(frame["rank"].unique())
        shades = _rank_shades(len(ranks))
        fig = go.Figure()
        for rank, shade in zip(ranks, shades, strict=True):
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
        by_label = "SAE" if by == "sae" else by
        _layout(
            fig,
            title or f"Top features by {label}, per {by_label}",
            x=by_label,
            y=label,
            barmode="group",
            legend_title_text="rank",
            uniformtext=dict(minsize=9, mode="show"),
        )
    if value in _FRACTION_COLUMNS:
        fig.update_yaxes(tickformat=".0%")
    return fig


def _rank_shades(n: int) -> list[str]:
    """Dark (rank 1) to light orange, so the eye reads the ranking within each group."""
    from plotly.colors import sample_colorscale

    points = [0.95] if n == 1 else [0.95 - 0.6 * i / (n - 1) for i in range(n)]
    return sample_colorscale("Oranges", points)


def category_bar(
    category_means: pd.DataFrame, *, highlight: str | None = None, title: str = "Mean activation by category"
) -> go.Figure:
    """Mean activation per category (``FeatureSummary.category_means``), in category colours.

    ``highlight`` outlines one category (e.g. the one a specialist is meant to detect).
    """
    _check_frame(category_means, ["category", "mean", "frac_active"], "category_means")
    _check_numeric(category_means, ["mean", "frac_active"], "category_means")
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
    return _layout(fig, title, x="category", y="mean activation")


def density_histogram(
    hist: Any,
    *,
    title: str | None = None,
    x_label: str | None = None,
) -> go.Figure:
    """Histogram bars from precomputed counts.

    ``hist`` is either a :class:`saelab.evals.DensityHistogram` (log10 feature density over
    features; dead features are reported in a note, since log10(0) has no bin) or a
    ``(counts, edges)`` pair such as ``FeatureSummary.histogram`` (activation values).
    """
    if hasattr(hist, "log10_edges"):
        counts = as_finite_array(hist.counts, "hist.counts", ndim=1)
        edges = as_finite_array(hist.log10_edges, "hist.log10_edges", ndim=1)
        x_label = x_label or "log10(feature density): fraction of tokens where the feature fires"
        title = title or "Feature density"
        hover = "density 10^%{customdata[0]:.2f} to 10^%{customdata[1]:.2f}<br>features: %{y:,}<extra></extra>"
        note = f"{hist.n_dead:,} dead feature(s) (never active) not shown"
        if hist.n_outside:
            note += f"; {hist.n_outside:,} outside the bins"
    else:
        try:
            counts_raw, edges_raw = hist
        except (TypeError, ValueError):
            raise ValueError(
                f"hist must be a saelab.evals.DensityHistogram or a (counts, edges) pair, got {type(hist).__name__}"
            ) from None
        counts = as_finite_array(counts_raw, "counts", ndim=1)
        edges = as_finite_array(edges_raw, "edges", ndim=1)
        x_label = x_label or "activation"
        title = title or "Activation histogram"
        hover = "activation %{customdata[0]:.3g} to %{customdata[1]:.3g}<br>count: %{y:,}<extra></extra>"
        note = None
    if len(edges) != len(counts) + 1:
        raise ValueError(f"need len(edges) == len(counts) + 1, got {len(edges)} edges for {len(counts)} counts")
    if (counts < 0).any() or (np.diff(edges) <= 0).any():
        raise ValueError("counts must be >= 0 and edges strictly increasing")
    fig = go.Figure(
        go.Bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts,
            width=np.diff(edges),
            customdata=np.stack([edges[:-1], edges[1:]], axis=1),
            marker=dict(color="#4C78A8", line=dict(color="white", width=0.5)),
            hovertemplate=hover,
            name="count",
        )
    )
    _layout(fig, title, x=x_label, y="count", bargap=0)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=1, y=1.06, showarrow=False, xanchor="right")
    return fig


def logit_lens_bar(
    logit_lens: pd.DataFrame, *, title: str = "Logit lens: tokens this feature promotes and suppresses"
) -> go.Figure:
    """Two panels of horizontal bars: the tokens a feature's decoder direction promotes / suppresses.

    Rows are placed by rank (not by token text), so two tokens that print alike stay apart.
    """
    _check_frame(logit_lens, ["direction", "rank", "token", "token_id", "logit"], "logit_lens")
    _check_numeric(logit_lens, ["logit"], "logit_lens")
    unknown = set(logit_lens["direction"]) - {"promoted", "suppressed"}
    if unknown:
        raise ValueError(f"logit_lens has unknown directions {sorted(unknown)}; valid: 'promoted', 'suppressed'")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("promoted", "suppressed"), horizontal_spacing=0.2)
    for col, (direction, color) in enumerate((("promoted", "#2E7D32"), ("suppressed", "#C62828")), start=1):
        part = logit_lens[logit_lens["direction"] == direction].sort_values("rank")
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
    return _layout(fig, title, height=max(300, 26 * int(logit_lens["rank"].max()) + 140))


# ---------------------------------------------------------------------------------------
# Layer comparison (notebook 03).


def density_histograms(
    hists: Mapping[str, Any], *, title: str = "Feature density, by SAE"
) -> go.Figure:
    """Several :class:`saelab.evals.DensityHistogram` as overlaid step lines (one per SAE), so
    their shapes compare on one axis. All must share the same bin edges (the evals default)."""
    if not hists:
        raise ValueError("hists is empty; pass {sae name: DensityHistogram}")
    colors = sae_colors(list(hists))
    fig = go.Figure()
    reference = None
    for name, hist in hists.items():
        if not hasattr(hist, "log10_edges"):
            raise ValueError(f"hists[{name!r}] is not a saelab.evals.DensityHistogram")
        edges = as_finite_array(hist.log10_edges, f"hists[{name!r}].log10_edges", ndim=1)
        counts = as_finite_array(hist.counts, f"hists[{name!r}].counts", ndim=1)
        if reference is not None and not np.array_equal(edges, reference):
            raise ValueError("all histograms must share the same bin edges to be overlaid")
        reference = edges
        fig.add_trace(
            go.Scatter(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts,
                mode="lines",
                line=dict(shape="hvh", color=colors[name], width=2),
                name=f"{name} ({hist.n_dead:,} dead)",
                hovertemplate=name + "<br>log10 density %{x:.2f}<br>features: %{y:,}<extra></extra>",
            )
        )
    x_label = "log10(feature density): fraction of tokens where the feature fires"
    return _layout(fig, title, x=x_label, y="features")


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
    _check_frame(frame, [x, y] + ([color] if color else []), "frame")
    _check_numeric(frame, [y], "frame")
    groups = _unique_in_order(frame[color]) if color else [None]
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
    return _layout(fig, title, x=x, y=y_label or value_label(y), barmode="group", showlegend=color is not None)


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
    return _layout(fig, title, x="feature", y="feature", height=size, width=size + 120)


def specialist_heatmap(
    scores: pd.DataFrame,
    *,
    title: str = "Best specialist score by category and SAE",
    value: str = "seed_score",
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
    return _layout(fig, title, x="SAE", y="category", height=max(350, 40 * len(scores) + 150))


def coverage_by_layer(
    frequent_long: pd.DataFrame, *, title: str = "Coverage of the most frequent feature, by SAE"
) -> go.Figure:
    """Share of texts on which each SAE's most frequent (rank-1) feature fires.

    Takes ``LayerComparison.frequent`` (columns sae, rank, feature, frequency); bars keep the
    SAE order of the frame and are labelled with the feature id.
    """
    _check_frame(frequent_long, ["sae", "rank", "feature", "frequency"], "frequent_long")
    _check_numeric(frequent_long, ["frequency"], "frequent_long")
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
    _layout(fig, title, x="SAE", y="share of texts where active")
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
    _layout(fig, title, x="SAE", y="categories with ≥ 1 specialist")
    fig.update_yaxes(range=[0, n_categories + 0.8], dtick=1)
    return fig


# ---------------------------------------------------------------------------------------
# Phase 1 and training (notebooks 01 and 04).


def dense_vs_sparse_figure(d: DenseVsSparse, *, max_features: int = 200) -> go.Figure:
    """The dense residual stream next to the sparse SAE code for one text, plus L0 per token.

    The feature panel shows the ``max_features`` features that fire most strongly anywhere in
    the text (all of d_sae would be a wall of zeros); the title gives the exact fractions.
    """
    resid = as_finite_array(d.resid, "resid", ndim=2)
    feats = as_finite_array(d.features, "features", ndim=2)
    if not (len(d.tokens) == resid.shape[0] == feats.shape[0]):
        raise ValueError(
            f"tokens ({len(d.tokens)}), resid rows ({resid.shape[0]}) and feature rows ({feats.shape[0]}) must agree"
        )
    if max_features < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    d_sae = feats.shape[1]
    peak = feats.max(axis=0)
    shown = np.argsort(-peak, kind="stable")[: min(max_features, int((peak > 0).sum()) or 1)]
    rows = np.arange(len(d.tokens))
    tokens = [visible_token(t, mark_spaces=True) for t in d.tokens]
    fig = make_subplots(
        rows=2,
        cols=2,
        shared_yaxes=True,
        column_widths=[0.5, 0.5],
        row_heights=[0.72, 0.28],
        specs=[[{}, {}], [{"colspan": 2}, None]],
        subplot_titles=(
            f"residual stream ({resid.shape[1]} dims): {d.resid_nonzero_frac:.1%} non-zero",
            f"SAE features ({len(shown)} most active of {d_sae:,}): {d.feature_active_frac:.2%} active",
            "active features per token (L0)",
        ),
        vertical_spacing=0.14,
        horizontal_spacing=0.04,
    )
    token_grid = np.broadcast_to(np.array(tokens, dtype=object)[:, None], resid.shape)
    fig.add_trace(
        go.Heatmap(
            z=resid,
            y=rows,
            colorscale="RdBu",
            # A few outlier dimensions are orders of magnitude larger than the rest; clipping the
            # colour range at the 99th percentile keeps the typical (dense) values visible.
            zmin=-_robust_max(resid),
            zmax=_robust_max(resid),
            showscale=False,
            customdata=token_grid,
            hovertemplate="token %{customdata}<br>dim %{x}<br>value %{z:.3g}<extra></extra>",
            name="residual",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            z=feats[:, shown],
            x=[f"#{int(f)}" for f in shown],
            y=rows,
            colorscale="Oranges",
            zmin=0,
            zmax=_robust_max(feats[feats > 0]) if (feats > 0).any() else 1.0,
            showscale=False,
            customdata=np.broadcast_to(np.array(tokens, dtype=object)[:, None], (len(tokens), len(shown))),
            hovertemplate="token %{customdata}<br>feature %{x}<br>activation %{z:.3g}<extra></extra>",
            name="features",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Bar(
            x=rows,
            y=as_finite_array(d.l0_per_token, "l0_per_token", ndim=1),
            customdata=tokens,
            marker_color="#E8710A",
            hovertemplate="token %{customdata}<br>L0: %{y}<extra></extra>",
            name="L0",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=tokens, autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="residual dimension", row=1, col=1)
    fig.update_xaxes(title_text="feature", showticklabels=False, row=1, col=2)
    fig.update_xaxes(tickmode="array", tickvals=rows, ticktext=tokens, title_text="token", row=2, col=1)
    fig.update_yaxes(title_text="L0", row=2, col=1)
    title = (
        f"Dense vs sparse: {d.n_features_active_anywhere:,} of {d_sae:,} features fire anywhere in this text, "
        f"mean L0 {float(np.mean(as_finite_array(d.l0_per_token, 'l0_per_token'))):.1f}"
    )
    return _layout(fig, title, height=max(500, 18 * len(tokens) + 330), showlegend=False)


def _robust_max(values: np.ndarray) -> float:
    peak = float(np.percentile(np.abs(values), 99))
    return peak if peak > 0 else float(np.abs(values).max()) or 1.0


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
    _check_frame(frame, [x, y] + ([color] if color else []), "frame")
    _check_numeric(frame, [x, y], "frame")
    fig = go.Figure()
    groups = _unique_in_order(frame[color]) if color else [None]
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
    _layout(fig, title or f"{value_label(y)} vs {value_label(x)}", x=value_label(x), y=value_label(y))
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
    _check_frame(frame, ["step", *metrics] + ([by] if by else []), "history")
    _check_numeric(frame, ["step", *metrics], "history")
    fig = make_subplots(
        rows=len(metrics),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[value_label(m) for m in metrics],
    )
    runs = _unique_in_order(frame[by]) if by else [None]
    palette = sae_colors([str(r) for r in runs]) if by else {}
    for run in runs:
        part = (frame if run is None else frame[frame[by] == run]).sort_values("step")
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
            if metric == "loss" and log_loss and (part[metric] > 0).all():
                fig.update_yaxes(type="log", row=row, col=1)
            if metric in _FRACTION_COLUMNS:
                fig.update_yaxes(tickformat=".0%", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(metrics), col=1)
    return _layout(fig, title, height=220 * len(metrics) + 120)


# ---------------------------------------------------------------------------------------
# Export.


def save_figure(
    fig: go.Figure,
    path: str | Path,
    formats: Sequence[ExportFormat] = ("png", "svg"),
    scale: float = 2,
    *,
    width: int | None = None,
    height: int | None = None,
) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (``assets/x`` -> ``assets/x.png``, ...).

    One headless Chromium session renders all formats. Fully offline: the browser is the system
    one (never downloaded), plotly.js is the copy inside the plotly package, and MathJax (which
    kaleido would otherwise load from a CDN) is switched off. Raises RuntimeError with install
    instructions when no Chromium is found.
    """
    if not formats:
        raise ValueError(f"formats is empty; pick from {list(_EXPORT_FORMATS)}")
    bad = [f for f in formats if f not in _EXPORT_FORMATS]
    if bad:
        raise ValueError(f"Unknown export formats {bad}; valid: {list(_EXPORT_FORMATS)}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    base = Path(path)
    if base.suffix.lstrip(".").lower() in _EXPORT_FORMATS:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    opts = {"scale": scale, "width": width or fig.layout.width or 900, "height": height or fig.layout.height or 500}
    outputs = [base.with_name(f"{base.name}.{fmt}") for fmt in formats]
    _render(
        [{"fig": fig, "path": out, "opts": {**opts, "format": fmt}} for out, fmt in zip(outputs, formats, strict=True)]
    )
    log.info("saved figure to %s", ", ".join(map(str, outputs)))
    return outputs


def figures_to_svg(figs: Sequence[go.Figure], *, width: int | None = None, height: int | None = None) -> list[str]:
    """SVG markup of each figure (for static HTML pages), rendered in one Chromium session."""
    if not figs:
        return []
    with tempfile.TemporaryDirectory(prefix="saelab-svg-") as tmp:
        paths = [Path(tmp) / f"fig{i}.svg" for i in range(len(figs))]
        _render(
            [
                {
                    "fig": fig,
                    "path": p,
                    "opts": {
                        "format": "svg",
                        "width": width or fig.layout.width or 900,
                        "height": height or fig.layout.height or 500,
                    },
                }
                for fig, p in zip(figs, paths, strict=True)
            ]
        )
        return [p.read_text(encoding="utf-8") for p in paths]


def _render(specs: list[dict[str, Any]]) -> None:
    browser = find_chromium()
    if browser is None:
        raise RuntimeError(INSTALL_HINT)
    import kaleido

    _ensure_kaleido_server(kaleido, browser)
    kaleido.write_fig_from_object_sync(specs, cancel_on_error=True)
    missing = [str(s["path"]) for s in specs if not Path(s["path"]).is_file()]
    if missing:
        raise RuntimeError(f"kaleido reported success but did not write {missing}")


_kaleido_browser: str | None = None


def _ensure_kaleido_server(kaleido: Any, browser: str) -> None:
    """Keep one headless Chromium for the whole process: starting one costs ~4 s, and a
    notebook exports a dozen figures. kaleido stops it at interpreter exit.

    mathjax=False: kaleido's default page loads MathJax from cdnjs, which hangs offline.
    """
    global _kaleido_browser
    if _kaleido_browser == browser and kaleido._global_server.is_running():
        return
    kaleido.stop_sync_server(silence_warnings=True)
    kaleido.start_sync_server(path=browser, mathjax=False, silence_warnings=True)
    _kaleido_browser = browser


__all__ = [
    "CATEGORY_COLORS",
    "as_finite_array",
    "category_bar",
    "category_color",
    "coactivation_heatmap",
    "coverage_by_layer",
    "dense_vs_sparse_figure",
    "density_histogram",
    "density_histograms",
    "feature_heatmap",
    "figures_to_svg",
    "grouped_bar",
    "logit_lens_bar",
    "pareto",
    "pareto_front",
    "sae_colors",
    "save_figure",
    "specialist_count_by_layer",
    "specialist_heatmap",
    "top_features_bar",
    "training_curves",
    "value_label",
    "visible_token",
]
