"""What the feature explorer shows for one view, as figures and HTML: precomputed summary
and activations in, no widgets and no model. :class:`~saelab.viz.feature_explorer.FeatureExplorer`
puts these into its widgets and into the standalone page ``to_html`` writes."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from saelab.viz.export import figures_to_svg
from saelab.viz.features import category_bar, logit_lens_bar
from saelab.viz.highlight import HighlightedTexts, feature_token_values, format_value, highlight_texts
from saelab.viz.sparsity import density_histogram

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from jaxtyping import Float

    from saelab.analysis.feature import FeatureSummary
    from saelab.extract.per_token import PerTokenFeatures

ALL_TEXTS = "all texts"
NO_NEURONPEDIA = "no Neuronpedia page for this SAE"
FIGURES = ("histogram", "categories", "logit_lens")
PAIRED_FIGURES = ("histogram", "categories")
"""Figures drawn side by side (when the output area is wide enough for both)."""


@dataclass(frozen=True)
class ExplorerView:
    """What the feature explorer shows now."""

    sae: str
    feature: int
    category: str
    """A category, or :data:`ALL_TEXTS`."""
    rank_by: str


def view_figures(summary: FeatureSummary, view: ExplorerView) -> dict[str, go.Figure]:
    """The histogram, category means and logit lens of the view's feature (those it has)."""
    figures: dict[str, go.Figure] = {}
    if summary.histogram is not None:
        figures["histogram"] = density_histogram(
            summary.histogram, title=f"Feature #{view.feature}: non-zero activations per token"
        )
    if summary.category_means is not None:
        highlight = None if view.category == ALL_TEXTS else view.category
        figures["categories"] = category_bar(
            summary.category_means, highlight=highlight, title=f"Feature #{view.feature}: mean activation by category"
        )
    if summary.logit_lens is not None:
        figures["logit_lens"] = logit_lens_bar(
            summary.logit_lens, title=f"Feature #{view.feature}: logit lens (tokens promoted / suppressed)"
        )
    for name in PAIRED_FIGURES:
        if name in figures:
            figures[name].update_layout(height=340)
    return figures


def top_texts(
    per_token: PerTokenFeatures,
    labels: list[str],
    view: ExplorerView,
    peaks: Float[np.ndarray, " n_texts"],
    top: int,
) -> HighlightedTexts | None:
    """The ``top`` texts where the feature fires hardest, highlighted (None: it never fires)."""
    order = np.argsort(-peaks, kind="stable")[:top]
    order = order[peaks[order] > 0]
    if not len(order):
        return None
    values = feature_token_values(per_token, view.feature)
    return highlight_texts(
        [per_token.tokens[i] for i in order],
        [values[i] for i in order],
        [labels[i] for i in order],
        title=f"Texts where feature #{view.feature} fires hardest",
        label=f"feature {view.feature}",
        target=None if view.category == ALL_TEXTS else view.category,
        group_rows=False,
    )


def header_html(summary: FeatureSummary, view: ExplorerView) -> str:
    """The SAE and feature, with the Neuronpedia link when the SAE has one."""
    url = summary.neuronpedia_url
    link = (
        f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">Neuronpedia page</a>'
        if url
        else f"<i>{NO_NEURONPEDIA}</i>"
    )
    title = f"{html.escape(view.sae)} · feature #{view.feature}"
    return f'<h3 style="margin: 8px 0 2px">{title}</h3><div>{link}</div>'


def summary_html(
    summary: FeatureSummary, view: ExplorerView, peaks: Float[np.ndarray, " n_texts"], pooled_max: float
) -> str:
    """The numbers at a glance: the explanation (when given), hook, density, texts where
    active, largest activations."""
    density = "n/a" if summary.density is None else f"{summary.density:.2%}"
    rows = [
        ("hook", html.escape(summary.hook)),
        ("feature", f"#{view.feature} of {summary.d_sae:,}"),
        ("density (share of tokens active)", density),
        ("texts where active", f"{int((peaks > 0).sum())} of {len(peaks)}"),
        ("max activation on a token", format_value(float(peaks.max()))),
        ("max pooled activation", format_value(pooled_max)),
    ]
    if summary.explanation is not None:
        rows.insert(0, ("explanation", f"<b>{html.escape(summary.explanation)}</b>"))
        if summary.explanation_score is not None:
            rows.insert(1, ("explanation score", html.escape(summary.explanation_score)))
    cells = "".join(f"<tr><td style='padding-right: 14px; color: #555'>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table style='font-size: 13px'>{cells}</table>"


def no_texts_html(view: ExplorerView, n_texts: int) -> str:
    return f"<p><i>Feature #{view.feature} does not fire on any of the {n_texts} texts.</i></p>"


def figure_bundle(fig: go.Figure) -> dict[str, Any]:
    """A display_data output for an Output widget, built without an IPython shell.

    plotly's own mime bundle follows the user's renderer settings (in Jupyter: plotly's
    mimetype, which JupyterLab, Notebook 7 and VS Code render); text/plain is the fallback.
    """
    data = dict(fig._repr_mimebundle_())
    data.setdefault("text/plain", f"<Figure: {fig.layout['title']['text']}>")
    return {"output_type": "display_data", "data": data, "metadata": {}}


def page_body(
    view: ExplorerView,
    parts: tuple[str, str, str],
    figures: dict[str, go.Figure],
    mode: Literal["plotlyjs", "svg"],
) -> str:
    """The standalone page of a view: ``parts`` are the header, summary and top-texts HTML.

    ``mode="plotlyjs"`` embeds plotly.js once (about 5 MB; the charts stay interactive);
    ``"svg"`` renders the charts to inline SVG through kaleido (small; needs Chromium).
    """
    figs = [figures[name] for name in FIGURES if name in figures]
    if mode == "svg":
        charts = figures_to_svg(figs)
    else:
        # plotly.js goes inline once, with the first figure; no CDN script tag anywhere.
        charts = [
            fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
            for i, fig in enumerate(figs)
        ]
    blocks = "".join(f'<div class="saelab-figure">{chart}</div>' for chart in charts)
    header, summary, examples = parts
    context = f"ranked by {view.rank_by} · category: {html.escape(view.category)}"
    return (
        f"<div style='font-family: system-ui, sans-serif; max-width: 1100px; margin: 0 auto'>"
        f"{header}<p style='color: #666'>{context}</p>{summary}{blocks}{examples}</div>"
    )
