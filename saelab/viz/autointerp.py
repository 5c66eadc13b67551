"""Automated-interpretability results as figures and tables: scores beside their controls.

Everything here takes the frames that :mod:`saelab.autointerp` returns, precomputed:
``records_frame`` (one row per feature and explainer, with ``score_M``, ``shuffled_M`` and
``all_negative_M`` per metric M) and ``replication_table`` (one row per decomposition,
explainer and metric). A score is only read beside its controls (a shuffled explanation on
the same contexts, and a judge that always says "no"), so every figure draws them too.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.autointerp.summary import metrics_of
from saelab.viz.highlight import CSS, TokenHighlight
from saelab.viz.style import apply_layout, check_frame, short_label, unique_in_order

DECOMPOSITION_ORDER = ("sae", "ica", "pca", "neurons", "random")
"""Cunningham et al.'s finding runs SAE > ICA > PCA > neurons; random directions come last."""
SCORE_COLOR = "#0072B2"
CONTROL_COLOR = "#999999"
BASELINE_COLOR = "#D55E00"


class FeatureLookup(Protocol):
    """Feature -> its examples: an ``ExampleSet`` or a dict (raises KeyError when absent)."""

    def __getitem__(self, feature: int, /) -> Any: ...


METRIC_LABELS: dict[str, str] = {
    "simulation": "simulation (correlation)",
    "embedding": "embedding (AUROC)",
    "detection_auroc": "detection (AUROC)",
    "detection_balanced_accuracy": "detection (balanced accuracy)",
    "detection_accuracy": "detection (accuracy)",
    "fuzzing_auroc": "fuzzing (AUROC)",
    "fuzzing_balanced_accuracy": "fuzzing (balanced accuracy)",
    "fuzzing_accuracy": "fuzzing (accuracy)",
}


def metric_label(metric: str) -> str:
    """Readable name of a scorer metric, with what the number is."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _check_metrics(frame: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    chosen = list(metrics) if metrics is not None else metrics_of(frame)
    if not chosen:
        raise ValueError("frame has no score_* columns; score the explanations first (run_autointerp)")
    check_frame(frame, ["explainer", *(f"{kind}_{m}" for m in chosen for kind in ("score", "shuffled"))], "frame")
    return chosen


def _groups(frame: pd.DataFrame) -> np.ndarray:
    """The x label of each row: its explainer, and its decomposition when there are several."""
    explainers = frame["explainer"].astype(str).to_numpy()
    if "decomposition" in frame.columns and len(set(frame["decomposition"])) > 1:
        return np.char.add(np.char.add(frame["decomposition"].astype(str).to_numpy().astype(str), " · "),
                           explainers.astype(str))  # fmt: skip
    return explainers


def score_distributions(
    frame: pd.DataFrame, metrics: Sequence[str] | None = None, *, title: str | None = None
) -> go.Figure:
    """Per metric (one panel each) and explainer (x), the features' scores beside the
    shuffled control's (paired boxes with every feature as a point), and the all-negative
    baseline as a dashed line. Features that were not scored (NaN) are left out."""
    metrics = _check_metrics(frame, metrics)
    groups = _groups(frame)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[metric_label(m) for m in metrics],
                        horizontal_spacing=0.08 if len(metrics) > 1 else 0.0)  # fmt: skip
    for col, metric in enumerate(metrics, start=1):
        for name, column, color in (("explanation", f"score_{metric}", SCORE_COLOR),
                                    ("shuffled control", f"shuffled_{metric}", CONTROL_COLOR)):  # fmt: skip
            values = frame[column].to_numpy(float)
            keep = np.isfinite(values)
            fig.add_trace(
                go.Box(x=groups[keep], y=values[keep], name=name, legendgroup=name, showlegend=col == 1,
                       offsetgroup=name, marker=dict(color=color, size=5), line=dict(color=color),
                       boxpoints="all", jitter=0.5, pointpos=0, customdata=frame["feature"].to_numpy()[keep],
                       hovertemplate=f"{name}<br>feature %{{customdata}}<br>score %{{y:.3f}}<extra></extra>"),
                row=1, col=col,
            )  # fmt: skip
        baseline = _baseline(frame, metric)
        if baseline is not None:
            # plotly's stubs type row/col as str; it takes the 1-based ints make_subplots uses.
            fig.add_hline(y=baseline, line=dict(color=BASELINE_COLOR, dash="dash", width=2), row=1, col=col,  # pyright: ignore[reportArgumentType]
                          annotation_text=f"all-negative {baseline:.2f}", annotation_position="top left",
                          annotation_font=dict(color=BASELINE_COLOR, size=11))  # fmt: skip
    fig.update_layout(boxmode="group", height=450, width=max(520, 380 * len(metrics)),
                      legend=dict(orientation="h", y=-0.15, x=0))  # fmt: skip
    return apply_layout(fig, title or "Explanation scores beside the shuffled-explanation control", y="score")


def _baseline(frame: pd.DataFrame, metric: str) -> float | None:
    column = f"all_negative_{metric}"
    if column not in frame:
        return None
    values = frame[column].to_numpy(float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def replication_figure(table: pd.DataFrame, explainer: str, metric: str, *, title: str | None = None) -> go.Figure:
    """Mean score per decomposition (sae, ica, pca, neurons, random; others after them) with
    its 95% CI, and the mean of the shuffled control beside each, for one explainer and metric."""
    check_frame(table, ["decomposition", "explainer", "metric", "mean", "low", "high", "mean_shuffled"], "table")
    part = table[(table["explainer"] == explainer) & (table["metric"] == metric)]
    if part.empty:
        pairs = unique_in_order(zip(table["explainer"], table["metric"], strict=True))
        raise ValueError(f"table has no rows for explainer {explainer!r} and metric {metric!r}; it has {pairs}")
    found = unique_in_order(part["decomposition"])
    order = [d for d in DECOMPOSITION_ORDER if d in found] + [d for d in found if d not in DECOMPOSITION_ORDER]
    part = part.set_index("decomposition").loc[order]
    n = part["n"].to_numpy() if "n" in part else np.full(len(part), np.nan)
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=order, y=part["mean"], name="explanation (mean, 95% CI)", marker_color=SCORE_COLOR, customdata=n,
        error_y=dict(type="data", symmetric=False, array=part["high"] - part["mean"],
                     arrayminus=part["mean"] - part["low"], color="#333333"),
        hovertemplate="%{x}<br>mean %{y:.3f}<br>features scored %{customdata}<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Bar(x=order, y=part["mean_shuffled"], name="shuffled control (mean)", marker_color=CONTROL_COLOR,
                         hovertemplate="%{x}<br>shuffled mean %{y:.3f}<extra></extra>"))  # fmt: skip
    fig.update_layout(barmode="group", height=450, width=700, legend=dict(orientation="h", y=-0.18, x=0))
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    heading = title or f"Interpretability by decomposition: {explainer}, {metric_label(metric)}"
    return apply_layout(fig, heading, x="decomposition", y=metric_label(metric))


def explanation_table_html(
    frame: pd.DataFrame,
    examples: FeatureLookup | None = None,
    *,
    metrics: Sequence[str] | None = None,
    n: int | None = 10,
    width: int = 80,
) -> str:
    """An HTML table (with the highlighting CSS) of the first ``n`` rows of ``frame`` (None:
    all): feature, explainer, explanation, and per metric the score and its shuffled control.

    ``examples`` maps a feature to its :class:`~saelab.autointerp.feature_examples.FeatureExamples`
    (an ``ExampleSet`` works); each row then shows the feature's top explain context with
    every token shaded by its activation. Explanations are escaped, never rendered as HTML.
    """
    metrics = _check_metrics(frame, metrics)
    check_frame(frame, ["feature", "explanation"], "frame")
    rows = frame if n is None else frame.head(n)
    head = ["feature", "explainer", "explanation"]
    head += [f"{metric_label(m)}<br><small>score / shuffled</small>" for m in metrics]
    head += ["top context"] if examples is not None else []
    body = "".join(_table_row(row, metrics, examples, width) for row in rows.itertuples(index=False))
    cells = "".join(f"<th style='{_CELL}'>{h}</th>" for h in head)
    return (f"<style>{CSS}</style><table class='saelab-autointerp' style='border-collapse: collapse; font-size: 13px'>"
            f"<thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>")  # fmt: skip


_CELL = "text-align: left; vertical-align: top; padding: 4px 10px; border-bottom: 1px solid #ddd"


def _table_row(row: Any, metrics: list[str], examples: FeatureLookup | None, width: int) -> str:
    values = row._asdict()
    text = str(values["explanation"] or "")
    shown = html.escape(short_label(text, width)) if text else "<i>(none)</i>"
    cells = [str(int(values["feature"])), html.escape(str(values["explainer"])),
             f"<span title='{html.escape(text, quote=True)}'>{shown}</span>"]  # fmt: skip
    for metric in metrics:
        score, control = values[f"score_{metric}"], values[f"shuffled_{metric}"]
        cells.append(f"{_number(score)} / <span style='color: #777'>{_number(control)}</span>")
    if examples is not None:
        cells.append(_context_cell(examples, int(values["feature"])))
    return "<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>"


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:.2f}" if np.isfinite(number) else "n/a"


def _context_cell(examples: FeatureLookup, feature: int) -> str:
    try:
        found = examples[feature]
    except KeyError:
        return ""
    if not found.explain:
        return "<i>never fires</i>"
    context = found.explain[0]
    view = TokenHighlight(list(context.tokens), list(context.acts), label=f"feature {feature}", legend=False)
    return view.fragment()
