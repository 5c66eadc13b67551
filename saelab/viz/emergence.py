"""Feature stability over training: how alike each snapshot's dictionary is to the final one,
and when the category specialists become significant. Precomputed data in
(:func:`saelab.evolution.feature_emergence`, :func:`saelab.evolution.specialist_emergence`),
``go.Figure`` out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import apply_layout, category_color, check_frame, check_numeric

if TYPE_CHECKING:
    from saelab.evolution.emergence import Emergence, SpecialistEmergence

STEP_COLUMNS = ["threshold", "null_rate", "matched_share", "appeared_share", "median", "q25", "q75",
                "same_unit_median"]  # fmt: skip
SPECIALIST_COLUMNS = ["category", "feature", "step", "auroc", "q_value", "is_specialist"]
_BLUE, _ORANGE, _GREY = "#0072B2", "#D55E00", "#888888"


def feature_stability_figure(
    emergence: Emergence,
    specialists: SpecialistEmergence | None = None,
    *,
    title: str = "Feature stability over training",
) -> go.Figure:
    """Two panels against the training step, three with ``specialists``:

    1. the cosine of each final feature's best match in the snapshot (median and interquartile
       band), the same unit's cosine (median), and the snapshot's null threshold;
    2. the share of final features matched at the step and appeared by it, beside the null
       rate (the share an unrelated dictionary would reach);
    3. each category's specialist: filled where it is significant at that snapshot, open where
       not, a diamond at its first significant step.
    """
    per_step = _per_step(emergence)
    rows = 3 if specialists is not None else 2
    heights = [0.45, 0.3, 0.25] if rows == 3 else [0.6, 0.4]
    panel_titles = ["cosine with the final feature", "share of final features", "category specialists"][:rows]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.07, row_heights=heights,
                        subplot_titles=panel_titles)  # fmt: skip
    _similarity_panel(fig, per_step, emergence.null_quantile)
    _share_panel(fig, per_step)
    if specialists is not None:
        _specialist_panel(fig, specialists)
    fig.update_xaxes(title_text="training step", row=rows, col=1)
    return apply_layout(fig, title, height=260 * rows + 140, legend=dict(groupclick="toggleitem"))


def _per_step(emergence: Emergence) -> pd.DataFrame:
    per_step = getattr(emergence, "per_step", None)
    if not isinstance(per_step, pd.DataFrame):
        raise ValueError(f"emergence must be the result of saelab.evolution.feature_emergence, "
                         f"got {type(emergence).__name__}")  # fmt: skip
    frame = per_step.reset_index()
    check_frame(frame, ["step", *STEP_COLUMNS], "emergence.per_step")
    check_numeric(frame, ["step", "threshold", "null_rate", "matched_share", "appeared_share", "median"],
                  "emergence.per_step")  # fmt: skip
    return frame.sort_values("step")


def _line(x, y, name: str, color: str, hover: str, *, dash: str = "solid", group: str = "", **extra) -> go.Scatter:
    template = f"{name}<br>step %{{x:,}}<br>{hover}: %{{y:.3f}}<extra></extra>"
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=group or name, marker=dict(size=6),
                      line=dict(color=color, dash=dash), hovertemplate=template, **extra)  # fmt: skip


def _similarity_panel(fig: go.Figure, per_step: pd.DataFrame, quantile: float) -> None:
    steps = per_step["step"]
    fig.add_trace(go.Scatter(x=steps, y=per_step["q75"], mode="lines", line=dict(width=0), showlegend=False,
                             legendgroup="best", hoverinfo="skip"), row=1, col=1)  # fmt: skip
    band = "step %{x:,}<br>25th percentile: %{y:.3f}<extra></extra>"
    fig.add_trace(go.Scatter(x=steps, y=per_step["q25"], mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor="rgba(0, 114, 178, 0.18)", name="best match, interquartile range",
                             legendgroup="best", hovertemplate=band), row=1, col=1)  # fmt: skip
    fig.add_trace(_line(steps, per_step["median"], "best match (median)", _BLUE, "median cosine", group="best"),
                  row=1, col=1)  # fmt: skip
    fig.add_trace(_line(steps, per_step["same_unit_median"], "same unit (median)", _ORANGE, "median cosine",
                        dash="dash"), row=1, col=1)  # fmt: skip
    fig.add_trace(_line(steps, per_step["threshold"], f"null threshold ({quantile:.0%} of random)", _GREY,
                        "threshold", dash="dot"), row=1, col=1)  # fmt: skip
    low = min(0.0, float(per_step["q25"].to_numpy(dtype=float).min()))
    fig.update_yaxes(title_text="cosine", range=[low, 1.02], row=1, col=1)


def _share_panel(fig: go.Figure, per_step: pd.DataFrame) -> None:
    steps = per_step["step"]
    fig.add_trace(_line(steps, per_step["matched_share"], "matched at this step", _BLUE, "share"), row=2, col=1)
    fig.add_trace(_line(steps, per_step["appeared_share"], "appeared by this step", _BLUE, "share", dash="dash"),
                  row=2, col=1)  # fmt: skip
    fig.add_trace(_line(steps, per_step["null_rate"], "null rate (chance matches)", _GREY, "share", dash="dot"),
                  row=2, col=1)  # fmt: skip
    fig.update_yaxes(title_text="share", tickformat=".0%", range=[0, 1.02], row=2, col=1)


def _specialist_panel(fig: go.Figure, specialists: SpecialistEmergence) -> None:
    long, per_category = getattr(specialists, "long", None), getattr(specialists, "per_category", None)
    if not isinstance(long, pd.DataFrame) or not isinstance(per_category, pd.DataFrame):
        raise ValueError(f"specialists must be the result of saelab.evolution.specialist_emergence, "
                         f"got {type(specialists).__name__}")  # fmt: skip
    check_frame(long, SPECIALIST_COLUMNS, "specialists.long")
    check_numeric(long, ["step", "auroc", "q_value"], "specialists.long")
    for category in per_category.index:
        part = long.loc[long["category"].to_numpy() == category].sort_values(by="step")
        color, feature = category_color(str(category)), int(per_category.loc[category, "feature"])
        significant = part["is_specialist"].to_numpy(dtype=bool)
        name = f"{category} · #{feature}"
        fig.add_trace(go.Scatter(
            x=part["step"], y=[name] * len(part), mode="markers", name=name, legendgroup=name, showlegend=False,
            marker=dict(size=11, color=[color if s else "white" for s in significant], line=dict(color=color, width=2)),
            customdata=part[["auroc", "q_value"]].to_numpy(),
            hovertemplate=f"{name}<br>step %{{x:,}}<br>AUROC %{{customdata[0]:.3f}}<br>q %{{customdata[1]:.2g}}"
                          "<extra></extra>",
        ), row=3, col=1)  # fmt: skip
        first = per_category.loc[category, "first_step"]
        if not pd.isna(first):
            fig.add_trace(go.Scatter(
                x=[int(first)], y=[name], mode="markers", name=f"{category}: first significant", showlegend=False,
                marker=dict(symbol="diamond", size=16, color=color, line=dict(color="black", width=1)),
                hovertemplate=f"{name}<br>first significant at step %{{x:,}}<extra></extra>",
            ), row=3, col=1)  # fmt: skip
    # One legend entry for the symbols (the rows are named on the axis): filled, open, diamond.
    for label, marker in (("specialist significant", dict(color=_GREY)),
                          ("specialist not significant", dict(color="white", line=dict(color=_GREY, width=2))),
                          ("first significant step", dict(symbol="diamond", color=_GREY))):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, marker=dict(size=11, **marker),
                                 hoverinfo="skip"), row=3, col=1)  # fmt: skip
    fig.update_yaxes(title_text="specialist", autorange="reversed", row=3, col=1)
