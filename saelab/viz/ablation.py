"""Figures of what ablating features does: a gradient estimate against the measured effect, and a
feature's direct against its total effect on the logits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from saelab.viz.style import apply_layout, check_frame, check_numeric, visible_token

METHOD_COLORS = {"grad_x_act": "#E69F00", "integrated_gradients": "#0072B2"}


def estimate_vs_ablation_figure(
    frame: pd.DataFrame, *, methods: Sequence[str] = ("grad_x_act", "integrated_gradients"), title: str | None = None
) -> go.Figure:
    """Scatter of each method's attribution (x) against the measured ablation effect (y), one
    point per node, with the y = x line and each method's Pearson r in the legend.

    ``frame`` has ``ablation`` and one column per method (the same units: change in the metric
    when the node is removed, sign flipped so that positive means the node raises the metric),
    and optionally ``top_<method>`` flags (as :func:`saelab.interventions.attribution_vs_ablation`
    gives), which restrict each method to its own top nodes.
    """
    check_frame(frame, ["ablation", *methods], "frame")
    check_numeric(frame, ["ablation", *methods], "frame")
    fig = go.Figure()
    for method in methods:
        # With a ``top_<method>`` column, each method is judged on its own top nodes.
        rows = frame.loc[frame[f"top_{method}"].to_numpy(bool)] if f"top_{method}" in frame else frame
        x, y = rows[method].to_numpy(float), rows["ablation"].to_numpy(float)
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 else float("nan")
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="markers", name=f"{method.replace('_', ' ')} (r = {r:.3f})",
            marker=dict(size=6, opacity=0.6, color=METHOD_COLORS.get(method)),
            hovertemplate=f"{method}: %{{x:.4f}}<br>ablation: %{{y:.4f}}<extra></extra>",
        ))  # fmt: skip
    lo = float(np.nanmin([frame[c].min() for c in ["ablation", *methods]]))
    hi = float(np.nanmax([frame[c].max() for c in ["ablation", *methods]]))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line=dict(color="#999999", dash="dot"), hoverinfo="skip"))  # fmt: skip
    return apply_layout(fig, title or f"Attribution against the actual ablation effect ({len(frame)} nodes)",
                        x="attribution (estimated effect)", y="ablation effect (measured)")  # fmt: skip


def logit_effect_figure(direct_top: pd.DataFrame, total_top: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Two panels of horizontal bars: the tokens a feature's decoder direction promotes and
    suppresses through the unembedding (direct), and those its ablation actually moves on real
    text (total). Frames have ``direction`` (promoted/suppressed), ``rank``, ``token``, ``logit``."""
    for name, top in (("direct_top", direct_top), ("total_top", total_top)):
        check_frame(top, ["direction", "rank", "token", "logit"], name)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("direct: decoder → unembedding", "total: when ablated"),
                        horizontal_spacing=0.18)  # fmt: skip
    for col, top in enumerate((direct_top, total_top), start=1):
        top = top.sort_values("logit")
        colors = np.where(top["direction"].to_numpy() == "promoted", "#009E73", "#D55E00")
        fig.add_trace(go.Bar(
            x=top["logit"], y=[f"{visible_token(str(t), mark_spaces=True)} " for t in top["token"]],
            orientation="h", marker_color=colors, showlegend=False,
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        ), row=1, col=col)  # fmt: skip
    fig.update_xaxes(title_text="logit change")
    height = 220 + 18 * max(len(direct_top), len(total_top))
    return apply_layout(fig, title or "What the feature does to the next-token logits", height=height)
