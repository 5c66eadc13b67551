"""The shared look of every figure: colours, readable labels, input checks and layout.

Every plot in :mod:`saelab.viz` takes precomputed data (DataFrames, arrays, dataclasses),
never runs the model, and returns a ``go.Figure``; tests feed hand-made data and assert on
``fig.data`` / ``fig.layout``. Figures share the ``plotly_white`` template, a title, labelled
axes and a hovertemplate on every trace, and a category has the same colour everywhere
(:data:`CATEGORY_COLORS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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
    "strong_in_minus_out": "specialist score (strong in − strong out)",
    "auroc": "AUROC",
    "effect_size": "effect size (Cliff's δ)",
    "mean": "mean activation",
    "l0": "L0 (active features per token)",
    "explained_variance": "explained variance",
    "explained_variance_typical": "explained variance without massive activations",
    "ce_loss_recovered": "CE loss recovered",
    "loss": "loss",
}
FRACTION_COLUMNS = {"frequency", "frac_active", "frac_examples_active", "explained_variance"}



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
    # cast: with the default colortype "rgb", plotly returns a list of "rgb(r, g, b)" strings.
    colors = cast(list[str], sample_colorscale("Viridis", points))
    return dict(zip(names, colors, strict=True))


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
# Input checks and the shared layout.


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


def check_frame(frame: pd.DataFrame, required: Iterable[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{name} is empty")


def check_numeric(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    for column in columns:
        as_finite_array(frame[column].to_numpy(dtype=float), f"{name}[{column!r}]")


def unique_in_order(values: Iterable[Any]) -> list[Any]:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def apply_layout(fig: go.Figure, title: str, x: str | None = None, y: str | None = None, **extra: Any) -> go.Figure:
    """The one look every figure shares: template, title, font, margins, axis titles."""
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


def short_label(text: str, width: int = 40) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
