"""The feature explorer (ipywidgets): pick an SAE, a feature and a category, and see the
feature's summary, histogram, category means, logit lens and top texts, highlighted.

It takes precomputed :class:`~saelab.viz.explorer_data.ExplorerData` and computes only what
a view needs (rankings through :mod:`saelab.analysis`, cached per view). State lives on the
explorer object, so tests drive the controls and read it without a browser or a kernel.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ipywidgets as ipw
import numpy as np
import pandas as pd
import torch

from saelab._util.atomic import atomic_write_text
from saelab.analysis.feature import FeatureSummary, feature_summary
from saelab.analysis.rankings import frequent, selective, strongest
from saelab.analysis.specialists import specialists
from saelab.viz.explorer_data import ExplorerData
from saelab.viz.export import figures_to_svg
from saelab.viz.features import category_bar, logit_lens_bar
from saelab.viz.highlight import HighlightedTexts, feature_token_values, format_value, highlight_texts, html_document
from saelab.viz.sparsity import density_histogram
from saelab.viz.style import value_label

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from jaxtyping import Float

RankBy = Literal["strongest", "frequent", "selective", "specialist"]
RANKINGS: dict[str, str] = {
    "strongest": "max_activation",
    "frequent": "frequency",
    "selective": "mean_when_active",
    "specialist": "auroc",
}
"""Ranking -> the column of the saelab.analysis frame it is ranked by (shown in the list)."""
ALL_TEXTS = "all texts"
NO_NEURONPEDIA = "no Neuronpedia page for this SAE"
FIGURES = ("histogram", "categories", "logit_lens")


@dataclass(frozen=True)
class ExplorerView:
    """What the feature explorer shows now."""

    sae: str
    feature: int
    category: str
    """A category, or :data:`ALL_TEXTS`."""
    rank_by: str


def _figure_bundle(fig: go.Figure) -> dict[str, Any]:
    """A display_data output for an Output widget, built without an IPython shell.

    plotly's own mime bundle follows the user's renderer settings (in Jupyter: plotly's
    mimetype, which JupyterLab, Notebook 7 and VS Code render); text/plain is the fallback.
    """
    data = dict(fig._repr_mimebundle_())
    data.setdefault("text/plain", f"<Figure: {fig.layout.title.text}>")
    return {"output_type": "display_data", "data": data, "metadata": {}}


class FeatureExplorer:
    """Browse the features of one or more SAEs: pick an SAE, a feature and a category.

    Controls: SAE dropdown, feature id (typed), a ranked list of features (strongest,
    frequent, selective or category specialist, computed on the chosen category's texts),
    and the category. Shown: a summary (density, activity, Neuronpedia link), the activation
    histogram, mean activation per category, the logit lens, and the texts where the feature
    fires hardest with every token highlighted. ``select(...)`` drives it from code;
    ``to_html(path)`` saves the current view as a self-contained page.

    State after each update: :attr:`view`, :attr:`summary` (a ``FeatureSummary``),
    :attr:`figures` (name -> ``go.Figure``), :attr:`examples` (``HighlightedTexts`` or None),
    :attr:`ranked` (the ranking frame behind the list).
    """

    def __init__(
        self,
        data: ExplorerData,
        *,
        top: int = 20,
        top_texts: int = 8,
        specialist_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if top < 1 or top_texts < 1:
            raise ValueError(f"top and top_texts must be >= 1, got {top} and {top_texts}")
        self.data = data
        self.top, self.top_texts = top, top_texts
        # The explorer only orders a list, so fewer permutations and no bootstrap keep it
        # interactive; use saelab.analysis.specialists directly for the reported statistics.
        self.specialist_kwargs = {"n_permutations": 2000, "n_bootstrap": 0, **(specialist_kwargs or {})}
        self._rankings: dict[tuple[str, str, str], pd.DataFrame] = {}
        self._syncing = False
        rank_options = list(RANKINGS) if len(data.categories) >= 2 else [r for r in RANKINGS if r != "specialist"]

        first = data.names[0]
        self.sae_select = ipw.Dropdown(options=data.names, value=first, description="SAE")
        self.category_select = ipw.Dropdown(
            options=[ALL_TEXTS, *data.categories], value=ALL_TEXTS, description="category"
        )
        self.rank_select = ipw.Dropdown(options=rank_options, value="strongest", description="rank by")
        self.ranked_select = ipw.Dropdown(options=[], description="ranked", layout=ipw.Layout(width="360px"))
        self.feature_input = ipw.BoundedIntText(value=0, min=0, max=self._d_sae(first) - 1, description="feature")
        self.header = ipw.HTML()
        self.summary_html = ipw.HTML()
        self.examples_html = ipw.HTML()
        self.figure_outputs = {name: ipw.Output() for name in FIGURES}
        self.widget = ipw.VBox(
            [
                ipw.HBox([self.sae_select, self.category_select]),
                ipw.HBox([self.rank_select, self.ranked_select, self.feature_input]),
                self.header,
                self.summary_html,
                ipw.HBox([self.figure_outputs["histogram"], self.figure_outputs["categories"]]),
                self.figure_outputs["logit_lens"],
                self.examples_html,
            ]
        )
        self.summary: FeatureSummary | None = None
        self.figures: dict[str, go.Figure] = {}
        self.examples: HighlightedTexts | None = None
        self.ranked = pd.DataFrame()

        with self._sync():
            self._refresh_ranking()
            if len(self.ranked):
                self.feature_input.value = int(self.ranked["feature"].iloc[0])
                self._sync_ranked_choice()
        self._render()
        for control in (
            self.sae_select,
            self.category_select,
            self.rank_select,
            self.ranked_select,
            self.feature_input,
        ):
            control.observe(self._on_change, names="value")

    # -- state ------------------------------------------------------------------------

    @property
    def view(self) -> ExplorerView:
        return ExplorerView(
            sae=self.sae_select.value,
            feature=int(self.feature_input.value),
            category=self.category_select.value,
            rank_by=self.rank_select.value,
        )

    def _d_sae(self, name: str) -> int:
        return int(self.data.saes[name].sae.cfg.d_sae)

    @contextmanager
    def _sync(self) -> Iterator[None]:
        """Set several controls without each change re-rendering (observers see the flag)."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    # -- driving it -------------------------------------------------------------------

    def select(
        self,
        sae: str | None = None,
        feature: int | None = None,
        category: str | None = None,
        rank_by: RankBy | None = None,
    ) -> FeatureExplorer:
        """Show ``feature`` of ``sae`` for ``category`` (None keeps the current choice)."""
        name = self.sae_select.value if sae is None else sae
        if name not in self.data.saes:
            raise ValueError(f"Unknown SAE {name!r}; valid: {self.data.names}")
        if category is not None and category not in self.category_select.options:
            raise ValueError(f"Unknown category {category!r}; valid: {list(self.category_select.options)}")
        if rank_by is not None and rank_by not in self.rank_select.options:
            raise ValueError(f"Unknown ranking {rank_by!r}; valid: {list(self.rank_select.options)}")
        if feature is not None and not 0 <= int(feature) < self._d_sae(name):
            raise ValueError(f"feature {feature} is out of range for {name!r} (d_sae={self._d_sae(name)})")
        with self._sync():
            self.sae_select.value = name
            self.feature_input.max = self._d_sae(name) - 1
            if category is not None:
                self.category_select.value = category
            if rank_by is not None:
                self.rank_select.value = rank_by
            if feature is not None:
                self.feature_input.value = int(feature)
            self._refresh_ranking()
        self._render()
        return self

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        owner = change["owner"]
        with self._sync():
            if owner is self.sae_select:
                self.feature_input.max = self._d_sae(change["new"]) - 1
            if owner is self.ranked_select:
                if change["new"] is None:
                    return
                self.feature_input.value = int(change["new"])
            if owner in (self.sae_select, self.category_select, self.rank_select):
                self._refresh_ranking()
            else:
                self._sync_ranked_choice()
        self._render()

    # -- rankings ---------------------------------------------------------------------

    def ranking(self, sae: str, rank_by: str, category: str = ALL_TEXTS) -> pd.DataFrame:
        """The ranking frame behind the list (cached): a saelab.analysis ranking of the chosen
        category's texts, or specialists of that category (all categories: best AUROC first)."""
        key = (sae, rank_by, category)
        if key not in self._rankings:
            self._rankings[key] = self._compute_ranking(sae, rank_by, category)
        return self._rankings[key]

    def _compute_ranking(self, sae: str, rank_by: str, category: str) -> pd.DataFrame:
        pooled = self.data.saes[sae].pooled
        if rank_by == "specialist":
            chosen = None if category == ALL_TEXTS else [category]
            table = specialists(
                pooled, self.data.labels, top=self.top, categories=chosen, **self.specialist_kwargs
            )
            table = table.sort_values(["auroc", "strong_in_minus_out"], ascending=False, kind="stable")
            return table.drop_duplicates("feature").head(self.top).reset_index(drop=True)
        if category != ALL_TEXTS:
            pooled = pooled[torch.as_tensor(np.asarray(self.data.labels) == category)]
        rank = {"strongest": strongest, "frequent": frequent, "selective": selective}[rank_by]
        return rank(pooled, top=self.top)

    def _refresh_ranking(self) -> None:
        view = self.view
        self.ranked = self.ranking(view.sae, view.rank_by, view.category)
        column = RANKINGS[view.rank_by]
        fmt = "{:.0%}" if column == "frequency" else "{:.3g}"
        labels = [
            f"#{int(f)} · {value_label(column)} {fmt.format(v)}"
            + (f" ({c})" if view.rank_by == "specialist" else "")
            for f, v, c in zip(
                self.ranked["feature"],
                self.ranked[column],
                self.ranked.get("category", [""] * len(self.ranked)),
                strict=True,
            )
        ]
        self.ranked_select.options = list(zip(labels, (int(f) for f in self.ranked["feature"]), strict=True))
        self._sync_ranked_choice()

    def _sync_ranked_choice(self) -> None:
        listed = {value for _, value in self.ranked_select.options}
        self.ranked_select.value = int(self.feature_input.value) if int(self.feature_input.value) in listed else None

    # -- rendering --------------------------------------------------------------------

    def _render(self) -> None:
        view = self.view
        entry = self.data.saes[view.sae]
        self.summary = feature_summary(
            entry.sae,
            view.feature,
            pooled=entry.pooled,
            per_token=entry.per_token,
            model=self.data.model,
            labels=self.data.labels,
        )
        peaks = entry.per_token.text_max(view.feature).double().numpy()
        self.figures = self._build_figures(view)
        self.examples = self._build_examples(view, peaks)
        self.header.value = self._header_html(view)
        self.summary_html.value = self._summary_html(view, peaks)
        self.examples_html.value = (
            self.examples._repr_html_()
            if self.examples is not None
            else f"<p><i>Feature #{view.feature} does not fire on any of the {len(self.data.texts)} texts.</i></p>"
        )
        for name, out in self.figure_outputs.items():
            out.outputs = (_figure_bundle(self.figures[name]),) if name in self.figures else ()

    def _build_figures(self, view: ExplorerView) -> dict[str, go.Figure]:
        summary = self.summary
        highlight = None if view.category == ALL_TEXTS else view.category
        figures = {
            "categories": category_bar(
                summary.category_means,
                highlight=highlight,
                title=f"Feature #{view.feature}: mean activation by category",
            )
        }
        if summary.histogram is not None:
            figures["histogram"] = density_histogram(
                summary.histogram, title=f"Feature #{view.feature}: non-zero activations per token"
            )
        if summary.logit_lens is not None:
            figures["logit_lens"] = logit_lens_bar(
                summary.logit_lens, title=f"Feature #{view.feature}: logit lens (tokens promoted / suppressed)"
            )
        for name in ("categories", "histogram"):
            if name in figures:
                figures[name].update_layout(height=340)
        return figures

    def _build_examples(self, view: ExplorerView, peaks: Float[np.ndarray, " n_texts"]) -> HighlightedTexts | None:
        entry = self.data.saes[view.sae]
        order = np.argsort(-peaks, kind="stable")[: self.top_texts]
        order = order[peaks[order] > 0]
        if not len(order):
            return None
        values = feature_token_values(entry.per_token, view.feature)
        return highlight_texts(
            [entry.per_token.tokens[i] for i in order],
            [values[i] for i in order],
            [self.data.labels[i] for i in order],
            title=f"Texts where feature #{view.feature} fires hardest",
            label=f"feature {view.feature}",
            target=None if view.category == ALL_TEXTS else view.category,
            group_rows=False,
        )

    def _header_html(self, view: ExplorerView) -> str:
        url = self.summary.neuronpedia_url
        link = (
            f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">Neuronpedia page</a>'
            if url
            else f"<i>{NO_NEURONPEDIA}</i>"
        )
        title = f"{html.escape(view.sae)} · feature #{view.feature}"
        return f'<h3 style="margin: 8px 0 2px">{title}</h3><div>{link}</div>'

    def _summary_html(self, view: ExplorerView, peaks: Float[np.ndarray, " n_texts"]) -> str:
        column = self.data.saes[view.sae].pooled[:, view.feature].numpy()
        density = "n/a" if self.summary.density is None else f"{self.summary.density:.2%}"
        rows = [
            ("hook", html.escape(self.summary.hook)),
            ("feature", f"#{view.feature} of {self.summary.d_sae:,}"),
            ("density (share of tokens active)", density),
            ("texts where active", f"{int((peaks > 0).sum())} of {len(peaks)}"),
            ("max activation on a token", format_value(float(peaks.max()))),
            ("max pooled activation", format_value(float(column.max()))),
        ]
        cells = "".join(f"<tr><td style='padding-right: 14px; color: #555'>{k}</td><td>{v}</td></tr>" for k, v in rows)
        return f"<table style='font-size: 13px'>{cells}</table>"

    # -- output -----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    def to_html(self, path: str | Path, *, figures: Literal["plotlyjs", "svg"] = "plotlyjs") -> Path:
        """Save the current view as one self-contained HTML file (no CDN, no network).

        ``figures="plotlyjs"`` embeds plotly.js once (about 5 MB; the charts stay interactive);
        ``"svg"`` renders them to inline SVG through kaleido (small; needs Chromium).
        """
        if figures not in ("plotlyjs", "svg"):
            raise ValueError(f"figures must be 'plotlyjs' or 'svg', got {figures!r}")
        view = self.view
        figs = [self.figures[name] for name in FIGURES if name in self.figures]
        if figures == "svg":
            blocks = [f'<div class="saelab-figure">{svg}</div>' for svg in figures_to_svg(figs)]
        else:
            # plotly.js goes inline once, with the first figure; no CDN script tag anywhere.
            charts = [
                fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
                for i, fig in enumerate(figs)
            ]
            blocks = [f'<div class="saelab-figure">{chart}</div>' for chart in charts]
        context = f"ranked by {view.rank_by} · category: {html.escape(view.category)}"
        examples = self.examples.fragment() if self.examples is not None else self.examples_html.value
        body = (
            f"<div style='font-family: system-ui, sans-serif; max-width: 1100px; margin: 0 auto'>"
            f"{self.header.value}<p style='color: #666'>{context}</p>{self.summary_html.value}"
            f"{''.join(blocks)}{examples}</div>"
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, html_document(f"{view.sae} · feature #{view.feature}", body))
        return path
