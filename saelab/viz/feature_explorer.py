"""The feature explorer (ipywidgets): pick an SAE, a feature and a category, and see the
feature's summary, histogram, category means, logit lens and top texts, highlighted.

It takes precomputed :class:`~saelab.viz.explorer_data.ExplorerData` and computes only what
a view needs (rankings through :mod:`saelab.analysis`, cached per view). State lives on the
explorer object, so tests drive the controls and read it without a browser or a kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ipywidgets as ipw
import numpy as np
import pandas as pd
import torch

from saelab.analysis.feature import FeatureSummary, feature_summary
from saelab.analysis.rankings import frequent, selective, strongest
from saelab.analysis.specialists import specialists
from saelab.viz.explorer_data import ExplorerData
from saelab.viz.explorer_view import (
    ALL_TEXTS,
    FIGURES,
    PAIRED_FIGURES,
    ExplorerView,
    figure_bundle,
    header_html,
    no_texts_html,
    page_body,
    summary_html,
    top_texts,
    view_figures,
)
from saelab.viz.highlight import HighlightedTexts, html_document
from saelab.viz.style import value_label
from saelab.viz.widget_base import WidgetPanel, row, set_given, write_page

if TYPE_CHECKING:
    import plotly.graph_objects as go

RankBy = Literal["strongest", "frequent", "selective", "specialist"]
RANKINGS: dict[str, str] = {
    "strongest": "max_activation",
    "frequent": "frequency",
    "selective": "mean_when_active",
    "specialist": "auroc",
}
"""Ranking -> the column of the saelab.analysis frame it is ranked by (shown in the list)."""
CHART_MIN_WIDTH = "420px"
"""Flex basis of a paired chart: the two share a row while each gets this much, else they wrap."""


def _chart_output() -> ipw.Output:
    """An Output for a chart that shares a row, its width set by the row and not by its content.

    JupyterLab's plotly renderer fits a figure without a width to its container. An Output in a
    plain HBox is as wide as its content, so there was none to fit and plotly fell back to 700 px:
    two charts made a 1408 px row in a 968 px output area (JupyterLab 4.6, 1400 px window), the
    second one clipped. min-width 0 lets the Output narrow later, below the chart drawn inside.
    """
    return ipw.Output(layout=ipw.Layout(flex=f"1 1 {CHART_MIN_WIDTH}", min_width="0"))


class FeatureExplorer(WidgetPanel):
    """Browse the features of one or more SAEs: pick an SAE, a feature and a category.

    Controls: SAE dropdown, feature id (typed), a ranked list of features (strongest,
    frequent, selective or category specialist, computed on the chosen category's texts),
    and the category. ``explanations`` (SAE name -> feature -> text, e.g. from
    :mod:`saelab.autointerp`) and ``explanation_scores`` (same keys, the score in words) are
    shown at the top of the summary when the feature has one. Shown: a summary (density,
    activity, Neuronpedia link), the activation histogram, mean activation per category,
    the logit lens, and the texts where the feature fires hardest with every token
    highlighted. ``select(...)`` drives it from code;
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
        explanations: Mapping[str, Mapping[int, str]] | None = None,
        explanation_scores: Mapping[str, Mapping[int, str]] | None = None,
    ) -> None:
        if top < 1 or top_texts < 1:
            raise ValueError(f"top and top_texts must be >= 1, got {top} and {top_texts}")
        for given in (explanations, explanation_scores):
            unknown = [name for name in given or {} if name not in data.saes]
            if unknown:
                raise ValueError(f"explanations are keyed by SAE name; unknown {unknown}, valid: {data.names}")
        self.data = data
        # Per SAE, feature -> text (e.g. from saelab.autointerp); shown above the summary.
        self.explanations = {name: dict(texts) for name, texts in (explanations or {}).items()}
        self.explanation_scores = {name: dict(texts) for name, texts in (explanation_scores or {}).items()}
        self.top, self.top_texts = top, top_texts
        # The explorer only orders a list, so fewer permutations and no bootstrap keep it
        # interactive; use saelab.analysis.specialists directly for the reported statistics.
        self.specialist_kwargs = {"n_permutations": 2000, "n_bootstrap": 0, **(specialist_kwargs or {})}
        self._rankings: dict[tuple[str, str, str], pd.DataFrame] = {}
        self.summary: FeatureSummary | None = None
        self.figures: dict[str, go.Figure] = {}
        self.examples: HighlightedTexts | None = None
        self.ranked = pd.DataFrame()
        self._build_controls()
        self._assemble(self._layout())

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

    def _build_controls(self) -> None:
        """The controls, and the HTML and Output widgets that each update fills."""
        data = self.data
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
        self.figure_outputs = {name: _chart_output() if name in PAIRED_FIGURES else ipw.Output() for name in FIGURES}

    def _layout(self) -> list[ipw.Widget]:
        """Controls, header and summary, the paired charts, the logit lens, the top texts."""
        return [
            row(self.sae_select, self.category_select),
            row(self.rank_select, self.ranked_select, self.feature_input),
            self.header,
            self.summary_html,
            row(*(self.figure_outputs[name] for name in PAIRED_FIGURES)),
            self.figure_outputs["logit_lens"],
            self.examples_html,
        ]

    # -- state ------------------------------------------------------------------------

    @property
    def view(self) -> ExplorerView:
        return ExplorerView(
            sae=str(self.sae_select.value),
            feature=int(self.feature_input.value),
            category=str(self.category_select.value),
            rank_by=str(self.rank_select.value),
        )

    def _d_sae(self, name: str) -> int:
        return int(self.data.saes[name].sae.cfg.d_sae)

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
            set_given((self.category_select, category), (self.rank_select, rank_by), (self.feature_input, feature))
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
            table = specialists(pooled, self.data.labels, top=self.top, categories=chosen, **self.specialist_kwargs)
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
            f"#{int(f)} · {value_label(column)} {fmt.format(v)}" + (f" ({c})" if view.rank_by == "specialist" else "")
            for f, v, c in zip(
                self.ranked["feature"],
                self.ranked[column],
                self.ranked["category"] if "category" in self.ranked else [""] * len(self.ranked),
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
        summary = feature_summary(
            entry.sae,
            view.feature,
            pooled=entry.pooled,
            per_token=entry.per_token,
            model=self.data.model,
            labels=self.data.labels,
            explanation=self.explanations.get(view.sae, {}).get(view.feature),
            explanation_score=self.explanation_scores.get(view.sae, {}).get(view.feature),
        )
        peaks = entry.per_token.text_max(view.feature).double().numpy()
        self.summary = summary
        self.figures = view_figures(summary, view)
        self.examples = top_texts(entry.per_token, self.data.labels, view, peaks, self.top_texts)
        self.header.value = header_html(summary, view)
        self.summary_html.value = summary_html(summary, view, peaks, float(entry.pooled[:, view.feature].max()))
        examples = self.examples
        self.examples_html.value = (
            examples._repr_html_() if examples is not None else no_texts_html(view, len(self.data.texts))
        )
        for name, out in self.figure_outputs.items():
            out.outputs = (figure_bundle(self.figures[name]),) if name in self.figures else ()

    # -- output -----------------------------------------------------------------------

    def to_html(self, path: str | Path, *, figures: Literal["plotlyjs", "svg"] = "plotlyjs") -> Path:
        """Save the current view as one self-contained HTML file (no CDN, no network).

        ``figures="plotlyjs"`` embeds plotly.js once (about 5 MB; the charts stay interactive);
        ``"svg"`` renders them to inline SVG through kaleido (small; needs Chromium).
        """
        if figures not in ("plotlyjs", "svg"):
            raise ValueError(f"figures must be 'plotlyjs' or 'svg', got {figures!r}")
        view = self.view
        examples = self.examples.fragment() if self.examples is not None else self.examples_html.value
        body = page_body(view, (self.header.value, self.summary_html.value, examples), self.figures, figures)
        return write_page(path, html_document(f"{view.sae} · feature #{view.feature}", body))
