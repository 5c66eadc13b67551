"""Figures about sparsity: the dense residual stream beside the sparse SAE code, activation
histograms and feature-density histograms. Precomputed data in, ``go.Figure`` out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import apply_layout, as_finite_array, sae_colors, visible_token

if TYPE_CHECKING:
    from saelab.lessons import DenseVsSparse


def dense_vs_sparse_figure(d: DenseVsSparse, *, top: int = 200) -> go.Figure:
    """The dense residual stream next to the sparse SAE code for one text, plus L0 per token.

    The code panel shows the ``top`` features that fire most strongly anywhere in the text
    (all of d_sae would be a wall of zeros); the title gives the exact fractions.
    """
    resid = as_finite_array(d.resid, "resid", ndim=2)
    codes = as_finite_array(d.codes, "codes", ndim=2)
    l0 = as_finite_array(d.l0_per_token, "l0_per_token", ndim=1)
    if not (len(d.tokens) == resid.shape[0] == codes.shape[0]):
        raise ValueError(
            f"tokens ({len(d.tokens)}), resid rows ({resid.shape[0]}) and code rows ({codes.shape[0]}) must agree"
        )
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    peak = codes.max(axis=0)
    shown = np.argsort(-peak, kind="stable")[: min(top, int((peak > 0).sum()) or 1)]
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
            f"SAE features ({len(shown)} most active of {codes.shape[1]:,}): {d.feature_active_frac:.2%} active",
            "active features per token (L0)",
        ),
        vertical_spacing=0.14,
        horizontal_spacing=0.04,
    )
    fig.add_trace(_resid_heatmap(resid, tokens), row=1, col=1)
    fig.add_trace(_code_heatmap(codes, shown, tokens), row=1, col=2)
    fig.add_trace(_l0_bars(l0, tokens), row=2, col=1)
    rows = np.arange(len(tokens))
    fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=tokens, autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="residual dimension", row=1, col=1)
    fig.update_xaxes(title_text="feature", showticklabels=False, row=1, col=2)
    fig.update_xaxes(tickmode="array", tickvals=rows, ticktext=tokens, title_text="token", row=2, col=1)
    fig.update_yaxes(title_text="L0", row=2, col=1)
    title = (
        f"Dense vs sparse: {d.n_features_active_anywhere:,} of {codes.shape[1]:,} features fire anywhere in this "
        f"text, mean L0 {float(np.mean(l0)):.1f}"
    )
    return apply_layout(fig, title, height=max(500, 18 * len(tokens) + 330), showlegend=False)


def _resid_heatmap(resid: np.ndarray, tokens: list[str]) -> go.Heatmap:
    peak = _robust_max(resid)
    return go.Heatmap(
        z=resid,
        y=np.arange(len(tokens)),
        colorscale="RdBu",
        # A few outlier dimensions are orders of magnitude larger than the rest; clipping the
        # colour range at the 99th percentile keeps the typical (dense) values visible.
        zmin=-peak,
        zmax=peak,
        showscale=False,
        customdata=np.broadcast_to(np.array(tokens, dtype=object)[:, None], resid.shape),
        hovertemplate="token %{customdata}<br>dim %{x}<br>value %{z:.3g}<extra></extra>",
        name="residual",
    )


def _code_heatmap(codes: np.ndarray, shown: np.ndarray, tokens: list[str]) -> go.Heatmap:
    return go.Heatmap(
        z=codes[:, shown],
        x=[f"#{int(f)}" for f in shown],
        y=np.arange(len(tokens)),
        colorscale="Oranges",
        zmin=0,
        zmax=_robust_max(codes[codes > 0]) if (codes > 0).any() else 1.0,
        showscale=False,
        customdata=np.broadcast_to(np.array(tokens, dtype=object)[:, None], (len(tokens), len(shown))),
        hovertemplate="token %{customdata}<br>feature %{x}<br>activation %{z:.3g}<extra></extra>",
        name="features",
    )


def _l0_bars(l0: np.ndarray, tokens: list[str]) -> go.Bar:
    return go.Bar(
        x=np.arange(len(tokens)),
        y=l0,
        customdata=tokens,
        marker_color="#E8710A",
        hovertemplate="token %{customdata}<br>L0: %{y}<extra></extra>",
        name="L0",
    )


def _robust_max(values: np.ndarray) -> float:
    peak = float(np.percentile(np.abs(values), 99))
    return peak if peak > 0 else float(np.abs(values).max()) or 1.0


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
    apply_layout(fig, title, x=x_label, y="count", bargap=0)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=1, y=1.06, showarrow=False, xanchor="right")
    return fig


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
    return apply_layout(fig, title, x=x_label, y="features")
