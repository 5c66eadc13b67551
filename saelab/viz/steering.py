"""Figures that judge steering: the concept score against fluency over a strength sweep, and one
row per category with the held-out concept gain and its perplexity cost.

Precomputed data in (the sweep's tables), ``go.Figure`` out; nothing here runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from saelab.viz.style import apply_layout, category_color, check_frame, check_numeric, unique_in_order

SWEEP_COLUMNS = ("strength", "concept", "concept_lo", "concept_hi", "perplexity", "relevance")
"""What :func:`steering_sweep_figure` needs; ``split``, ``category`` and ``chosen`` are optional."""
SUMMARY_COLUMNS = (
    "category",
    "feature",
    "strength",
    "concept_baseline",
    "concept_steered",
    "concept_gain",
    "gain_lo",
    "gain_hi",
    "perplexity_ratio",
    "passed",
)
"""What :func:`steering_summary_figure` needs: one row per category (or per swept feature)."""
SPLIT_COLORS = {"select": "#0072B2", "report": "#D55E00"}
"""The split the strength was chosen on (blue) and the held-out split it is reported on (vermilion)."""
PERPLEXITY_COLOR = "#555555"
PASSED_COLORS = {True: "#009E73", False: "#999999"}
BAND_ALPHA = 0.18


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _check_interval(frame: pd.DataFrame, lo: str, mid: str, hi: str, name: str) -> None:
    """``lo <= mid <= hi`` where the bounds are known; NaN bounds mean no CI (one prompt, no bootstrap)."""
    for column in (lo, hi):
        values = frame[column].to_numpy(dtype=float)
        if np.isinf(values).any():
            raise ValueError(f"{name}[{column!r}] contains inf")
    low, centre, high = (frame[c].to_numpy(dtype=float) for c in (lo, mid, hi))
    with np.errstate(invalid="ignore"):
        if ((low > centre + 1e-12) | (centre > high + 1e-12)).any():
            raise ValueError(f"{name} needs {lo} <= {mid} <= {hi} in every row")


def _check_sweep(by_strength: pd.DataFrame) -> None:
    check_frame(by_strength, SWEEP_COLUMNS, "by_strength")
    check_numeric(by_strength, ["strength", "concept", "perplexity", "relevance"], "by_strength")
    _check_interval(by_strength, "concept_lo", "concept", "concept_hi", "by_strength")
    if (by_strength["perplexity"].to_numpy(dtype=float) <= 0).any():
        raise ValueError("by_strength['perplexity'] must be > 0 (it is drawn on a log axis)")
    keys = [k for k in ("category", "split") if k in by_strength] + ["strength"]
    if by_strength.duplicated(keys).any():
        raise ValueError(f"by_strength has repeated rows for the same {keys}; aggregate first")


def _column_or_none(frame: pd.DataFrame, column: str) -> list[str | None]:
    return [str(v) for v in frame[column]] if column in frame else [None] * len(frame)


def _groups(by_strength: pd.DataFrame) -> list[tuple[str | None, str | None]]:
    """(category, split) pairs: categories in order of appearance, "select" before "report" within
    each; None where the frame has no such column."""
    cats, splits = _column_or_none(by_strength, "category"), _column_or_none(by_strength, "split")
    pairs = unique_in_order(zip(cats, splits, strict=True))
    order = {c: i for i, c in enumerate(unique_in_order(cats))}
    known = list(SPLIT_COLORS)
    return sorted(pairs, key=lambda p: (order[p[0]], known.index(p[1]) if p[1] in known else len(known)))


def _sweep_traces(part: pd.DataFrame, name: str, color: str, dash: str, ppl_color: str) -> list[go.Scatter]:
    """The CI band, the concept line (left axis) and the perplexity line (right axis) of one group."""
    part = part.sort_values("strength", kind="stable")
    x = part["strength"].to_numpy(dtype=float)
    lo, hi = part["concept_lo"].to_numpy(dtype=float), part["concept_hi"].to_numpy(dtype=float)
    known = np.isfinite(lo) & np.isfinite(hi)  # rows without a CI leave the band out there
    band = go.Scatter(
        x=np.concatenate([x[known], x[known][::-1]]),
        y=np.concatenate([hi[known], lo[known][::-1]]),
        mode="lines",
        fill="toself",
        fillcolor=_rgba(color, BAND_ALPHA),
        line=dict(width=0),
        name=f"{name} · 95% CI" if name else "95% CI",
        legendgroup=name,
        showlegend=False,
        hoverinfo="skip",
    )
    custom = part[["concept_lo", "concept_hi", "perplexity", "relevance"]].to_numpy(dtype=float)
    head = f"{name}<br>" if name else ""
    hover = (
        f"{head}strength %{{x:.3g}}<br>concept %{{y:.1%}}"
        " (95% CI %{customdata[0]:.1%}–%{customdata[1]:.1%})"
        "<br>perplexity %{customdata[2]:.3g}<br>relevance %{customdata[3]:.3g} nats/token<extra></extra>"
    )
    concept = go.Scatter(
        x=x,
        y=part["concept"].to_numpy(dtype=float),
        mode="lines+markers",
        line=dict(color=color, dash=dash),
        name=f"concept · {name}" if name else "concept",
        legendgroup=name,
        customdata=custom,
        hovertemplate=hover,
    )
    perplexity = go.Scatter(
        x=x,
        y=part["perplexity"].to_numpy(dtype=float),
        mode="lines+markers",
        line=dict(color=ppl_color, dash="dot", width=1.5),
        marker=dict(symbol="circle-open"),
        name=f"perplexity · {name}" if name else "perplexity",
        legendgroup=name,
        yaxis="y2",
        customdata=custom,
        hovertemplate=f"{head}strength %{{x:.3g}}<br>perplexity %{{y:.3g}}<extra></extra>",
    )
    return [band, concept, perplexity]


def _mark_chosen(fig: go.Figure, by_strength: pd.DataFrame) -> None:
    if "chosen" not in by_strength:
        return
    chosen = by_strength[by_strength["chosen"].astype(bool)]
    for strength in sorted({float(s) for s in chosen["strength"]}):
        fig.add_vline(
            x=strength,
            line=dict(color="#333333", dash="dash", width=1),
            annotation=dict(text=f"chosen {strength:g}", yanchor="bottom"),
            annotation_position="top",
        )


def steering_sweep_figure(by_strength: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Concept against fluency over a strength sweep: the concept probe's mean probability with
    its 95% CI band (left axis) and the continuation's perplexity (right axis, log scale).

    ``by_strength``: one row per strength (0 = the unsteered baseline), with columns
    ``strength``, ``concept``, ``concept_lo``, ``concept_hi``, ``perplexity`` (geometric mean) and
    ``relevance`` (nats/token, shown on hover), e.g. ``SweepResult.by_strength()``. Optional:
    ``split`` (one line each; "select": the prompts the strength was chosen on, "report":
    held-out), ``category`` (one line per category, coloured by category) and ``chosen`` (bool;
    a dashed line marks those strengths); other columns are ignored.
    NaN CI bounds (one prompt, or no bootstrap) leave the band out at those strengths.
    """
    _check_sweep(by_strength)
    groups = _groups(by_strength)
    categories = unique_in_order(c for c, _ in groups)
    by_category = len(categories) > 1
    fig = go.Figure()
    cats, splits = _column_or_none(by_strength, "category"), _column_or_none(by_strength, "split")
    for category, split in groups:
        rows = np.array([c == category and s == split for c, s in zip(cats, splits, strict=True)])
        name = " · ".join(p for p in (category if by_category else None, split) if p is not None)
        color = category_color(category) if by_category and category else SPLIT_COLORS.get(split or "select", "#444444")
        dash = "dash" if split == "report" and by_category else "solid"
        # One series: perplexity in grey, so the two y-axes' lines are told apart by colour too.
        ppl_color = PERPLEXITY_COLOR if len(groups) == 1 else color
        fig.add_traces(_sweep_traces(by_strength.loc[rows], name, color, dash, ppl_color))
    _mark_chosen(fig, by_strength)
    if title is None:
        title = "Steering: concept vs fluency" + (f" · {categories[0]}" if categories[0] and not by_category else "")
    apply_layout(
        fig,
        title,
        x="steering strength (× typical max activation)",
        yaxis=dict(title_text="concept probe probability", range=[0, 1.02], tickformat=".0%"),
        yaxis2=dict(
            title_text="perplexity (log scale)",
            type="log",
            overlaying="y",
            side="right",
            showgrid=False,
            tickformat=".3~g",
            tickmode="linear",
            dtick="D2",
        ),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        hovermode="closest",
    )
    fig.update_layout(margin=dict(r=80, t=100))
    return fig


def _check_summary(table: pd.DataFrame) -> None:
    check_frame(table, SUMMARY_COLUMNS, "table")
    numeric = ["feature", "strength", "concept_baseline", "concept_steered", "concept_gain", "perplexity_ratio"]
    check_numeric(table, numeric, "table")
    _check_interval(table, "gain_lo", "concept_gain", "gain_hi", "table")
    if (table["perplexity_ratio"].to_numpy(dtype=float) <= 0).any():
        raise ValueError("table['perplexity_ratio'] must be > 0")
    if not all(isinstance(v, (bool, np.bool_)) for v in table["passed"]):
        raise ValueError("table['passed'] must hold booleans")
    if pd.Series(_row_labels(table)).duplicated().any():
        raise ValueError("table has repeated rows for the same category, feature and strength")


def _row_labels(table: pd.DataFrame) -> list[str]:
    return [
        f"{c} · #{int(f)} × {s:g}"
        for c, f, s in zip(table["category"], table["feature"], table["strength"], strict=True)
    ]


def steering_summary_figure(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """One row per category: the held-out concept gain (steered − baseline probe probability) with
    its bootstrap 95% CI, green where the steering passed (CI above 0, perplexity within its bound) and
    grey where it did not, and the perplexity ratio written beside each row.

    ``table`` columns: ``category``, ``feature``, ``strength`` (chosen), ``concept_baseline``,
    ``concept_steered``, ``concept_gain`` (or ``gain``), ``gain_lo``, ``gain_hi``, ``perplexity_ratio``,
    ``passed``, e.g. ``saelab.interventions.steering_table(results)``. Rows are drawn top to bottom
    in the table's order; NaN CI bounds draw no whisker.
    """
    if "concept_gain" not in table and "gain" in table:  # HeldOut's name for it (saelab.interventions)
        table = table.rename(columns={"gain": "concept_gain"})
    _check_summary(table)
    labels = _row_labels(table)
    fig = go.Figure()
    for passed in (True, False):
        rows = np.array([bool(v) == passed for v in table["passed"]])
        if not rows.any():
            continue
        part = table.loc[rows]
        gain = part["concept_gain"].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=gain,
                y=[label for label, keep in zip(labels, rows, strict=True) if keep],
                mode="markers",
                marker=dict(size=12, color=PASSED_COLORS[passed], line=dict(color="white", width=1)),
                error_x=dict(
                    type="data",
                    symmetric=False,
                    # No whisker where the CI is unknown (NaN bounds).
                    array=np.nan_to_num(part["gain_hi"].to_numpy(dtype=float) - gain),
                    arrayminus=np.nan_to_num(gain - part["gain_lo"].to_numpy(dtype=float)),
                    color=PASSED_COLORS[passed],
                    thickness=2,
                ),
                name="passed" if passed else "not passed",
                customdata=part[
                    ["gain_lo", "gain_hi", "concept_baseline", "concept_steered", "perplexity_ratio"]
                ].to_numpy(dtype=float),
                hovertemplate=(
                    "%{y}<br>gain %{x:+.1%} (95% CI %{customdata[0]:+.1%} to %{customdata[1]:+.1%})"
                    "<br>concept %{customdata[2]:.1%} → %{customdata[3]:.1%}"
                    "<br>perplexity ×%{customdata[4]:.2f}<extra></extra>"
                ),
            )
        )
    _annotate_ratios(fig, table, labels)
    fig.add_vline(x=0, line=dict(color="#333333", width=1))
    apply_layout(
        fig,
        title or "Steering on held-out prompts: concept gain (95% CI) and perplexity cost",
        x="concept gain (steered − baseline probe probability)",
        xaxis=dict(tickformat="+.0%", zeroline=False),
        yaxis=dict(categoryorder="array", categoryarray=labels, autorange="reversed"),
        height=max(320, 110 + 48 * len(table)),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    fig.update_layout(margin=dict(l=200, r=110, t=100))
    return fig


def _annotate_ratios(fig: go.Figure, table: pd.DataFrame, labels: Sequence[str]) -> None:
    """ "ppl ×r" just right of each row's CI whisker."""
    right = table["gain_hi"].astype(float).fillna(table["concept_gain"].astype(float))
    for label, hi, ratio in zip(labels, right, table["perplexity_ratio"], strict=True):
        fig.add_annotation(
            x=float(hi),
            y=label,
            text=f"ppl ×{float(ratio):.2f}",
            showarrow=False,
            xanchor="left",
            xshift=8,
            font=dict(size=11, color="#555555"),
        )
