"""Token highlighting and the interactive explorers: precomputed data in, HTML / widgets out.

Token highlighting follows Anthropic's feature pages: every token is shaded with an opacity
proportional to its activation, the exact value shows on hover (a ``title`` attribute for the
native tooltip and a CSS tooltip that appears at once), a colour-scale legend sits above the
text, and newlines/tabs stay visible (⏎, ⇥) while leading spaces are preserved. Each view
renders to a standalone HTML document (``.html()``, ``.save(path)``) with no scripts and no
network, and to Jupyter through ``_repr_html_``.

:class:`FeatureExplorer` (ipywidgets) browses the features of one or more SAEs over
precomputed :class:`ExplorerData`, using ``saelab.analysis`` for the numbers and
``saelab.plots`` for the charts; :class:`TextExplorer` shows the top features of a typed text.
State lives on the explorer objects (current view, summary, figures, highlighted examples),
so tests drive the controls and read it without a browser or a kernel.

torch, ``saelab.analysis`` and ``saelab.extract`` are imported where they are needed:
``saelab.analysis`` pulls in SAELens and TransformerLens (~10 s), which token highlighting
on its own does not need.
"""

from __future__ import annotations

import html
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ipywidgets as ipw
import numpy as np
import pandas as pd

from saelab import plots
from saelab.plots import as_finite_array, category_color

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from jaxtyping import Float, Int
    from sae_lens import SAE
    from torch import Tensor
    from transformer_lens import HookedTransformer

    from saelab.analysis import FeatureSummary
    from saelab.extract import PerTokenFeatures

RGB = tuple[int, int, int]
DEFAULT_COLOR: RGB = (255, 140, 0)
"""Orange, as in the seed's highlighting."""
MUTED_COLOR: RGB = (150, 150, 150)
"""Grey for texts outside the category a specialist is meant to detect."""

CSS = """
.saelab-hl { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 13px; line-height: 2.0; color: #1f1f1f; }
.saelab-hl .saelab-title { font-family: system-ui, sans-serif; font-weight: 600; margin: 6px 0 2px; }
.saelab-hl .saelab-group { font-family: system-ui, sans-serif; font-weight: 600; margin: 14px 0 4px;
  padding-left: 6px; border-left: 4px solid #999; }
.saelab-hl .saelab-row { display: flex; gap: 10px; align-items: baseline; padding: 2px 0;
  border-bottom: 1px solid #f0f0f0; }
.saelab-hl .saelab-meta { flex: 0 0 5.5em; text-align: right; color: #777; font-size: 11px; white-space: nowrap; }
.saelab-hl .saelab-meta.tagged { flex-basis: 15em; }
.saelab-hl .saelab-text { flex: 1 1 auto; overflow-wrap: anywhere; }
.saelab-hl .tok { position: relative; white-space: pre-wrap; border-radius: 2px; padding: 2px 0; }
.saelab-hl .tok:hover { outline: 1px solid #444; }
.saelab-hl .tok:hover::after { content: attr(data-tip); position: absolute; left: 0; bottom: 125%;
  background: #222; color: #fff; padding: 1px 6px; border-radius: 3px; font-size: 11px;
  line-height: 1.6; white-space: nowrap; z-index: 10; pointer-events: none; }
.saelab-hl .ws { opacity: 0.5; }
.saelab-hl .saelab-tag { font-family: system-ui, sans-serif; font-weight: 600; }
.saelab-hl .saelab-legend { font-family: system-ui, sans-serif; font-size: 11px; color: #555;
  display: flex; align-items: center; gap: 6px; margin: 2px 0 6px; }
.saelab-hl .saelab-scale { display: inline-block; width: 160px; height: 10px; border: 1px solid #ccc; }
"""


_INVISIBLE = {"\r": "␍", "\n": "⏎", "\t": "⇥"}


def format_value(value: float) -> str:
    """Activation as shown on hover: two decimals, scientific for tiny non-zero values."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2e}"


def _rgba(color: RGB, alpha: float) -> str:
    return f"rgba({color[0]},{color[1]},{color[2]},{alpha:.3f})"


def _check_color(color: Sequence[int]) -> RGB:
    if len(color) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in color):
        raise ValueError(f"color must be an (r, g, b) triple of integers in 0..255, got {color!r}")
    return (int(color[0]), int(color[1]), int(color[2]))


def _resolve_vmax(values: np.ndarray, vmax: float | None) -> float:
    if vmax is None:
        peak = float(values.max()) if values.size else 0.0
        # All-zero (or negative) values: any positive scale shows them as unshaded.
        return peak if peak > 0 else 1.0
    if not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"vmax must be a positive finite number, got {vmax!r}")
    return float(vmax)


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title or 'saelab')}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


class _HtmlView(ABC):
    """Shared rendering: a fragment for Jupyter, a standalone document, a file."""

    @abstractmethod
    def fragment(self) -> str:
        """The view's HTML without the CSS (which :meth:`_repr_html_` and :meth:`html` add)."""

    def _doc_title(self) -> str:
        return getattr(self, "title", "") or "saelab"

    def _repr_html_(self) -> str:
        return f"<style>{CSS}</style>{self.fragment()}"

    def html(self) -> str:
        """A standalone HTML document: inline CSS, no scripts, nothing fetched."""
        return _document(self._doc_title(), self.fragment())

    def save(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path`` (parent folders are created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path


def legend_html(vmax: float, color: RGB = DEFAULT_COLOR, label: str = "activation") -> str:
    """The colour scale: transparent at 0, full colour at ``vmax``."""
    gradient = f"linear-gradient(to right, {_rgba(color, 0)}, {_rgba(color, 1)})"
    return (
        f'<div class="saelab-legend"><span>{html.escape(label)}:</span><span>0</span>'
        f'<span class="saelab-scale" style="background: {gradient}"></span>'
        f"<span>{format_value(vmax)}</span></div>"
    )


@dataclass
class TokenHighlight(_HtmlView):
    """One text, each token shaded by its activation (opacity = value / vmax, clipped to [0, 1])."""

    tokens: Sequence[str]
    values: Float[Tensor | np.ndarray, " pos"] | Sequence[float]
    title: str = ""
    vmax: float | None = None
    """Activation drawn at full colour; defaults to this text's maximum (pass a shared vmax
    to compare several texts on one scale)."""
    color: RGB = DEFAULT_COLOR
    label: str = "activation"
    """What the values are, shown in each token's tooltip, e.g. "feature 123"."""
    legend: bool = True
    _values: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = [str(t) for t in self.tokens]
        values = as_finite_array(self.values, "values", ndim=1) if len(self.values) else np.zeros(0)
        if len(values) != len(self.tokens):
            raise ValueError(f"tokens ({len(self.tokens)}) and values ({len(values)}) must have the same length")
        self._values = values
        self.vmax = _resolve_vmax(values, self.vmax)
        self.color = _check_color(self.color)

    @property
    def max_value(self) -> float:
        return float(self._values.max()) if self._values.size else 0.0

    def spans(self) -> str:
        """The tokens as ``<span class="tok">`` elements (no wrapper).

        A token shown as "" holds only the first bytes of a character that a later token
        completes (``saelab.extract.token_strings``); it is drawn together with that token as
        one span, at the larger of their values, with every piece's value in the tooltip.
        """
        out, held = [], []
        for token, value in zip(self.tokens, self._values.tolist(), strict=True):
            held.append(value)
            if token == "":
                continue
            out.append(self._span(token, held))
            held = []
        if held:  # a character cut off at the end of the text
            out.append(self._span("\ufffd", held))
        return "".join(out)

    def _span(self, token: str, pieces: list[float]) -> str:
        value = max(pieces)
        alpha = float(np.clip(value / self.vmax, 0.0, 1.0))
        tip = f"{self.label}: {format_value(value)}"
        if len(pieces) > 1:
            tip += f" ({len(pieces)} tokens: {', '.join(format_value(v) for v in pieces)})"
        tip = html.escape(tip, quote=True)
        # Spaces stay spaces (pre-wrap keeps leading ones and code indentation); characters
        # that would vanish or reflow the text become greyed glyphs.
        shown = html.escape(token)
        for char, glyph in _INVISIBLE.items():
            shown = shown.replace(char, f'<span class="ws">{glyph}</span>')
        breaks = "<br>" * token.count("\n")
        style = f"background-color: {_rgba(self.color, alpha)}" if alpha > 0 else "background-color: transparent"
        return (
            f'<span class="tok" data-value="{value:.6g}" data-tip="{tip}" title="{tip}" style="{style}">'
            f"{shown}</span>{breaks}"
        )

    def fragment(self) -> str:
        head = f'<div class="saelab-title">{html.escape(self.title)}</div>' if self.title else ""
        legend = legend_html(self.vmax, self.color, self.label) if self.legend else ""
        return f'<div class="saelab-hl">{head}{legend}<div class="saelab-text">{self.spans()}</div></div>'


def token_highlight_html(
    tokens: Sequence[str],
    values: Float[Tensor | np.ndarray, " pos"] | Sequence[float],
    **kwargs: Any,
) -> str:
    """HTML fragment (with its CSS) of one highlighted text; ``kwargs`` as for :class:`TokenHighlight`."""
    return TokenHighlight(tokens, values, **kwargs)._repr_html_()


@dataclass
class HighlightedTexts(_HtmlView):
    """Several highlighted texts on one shared colour scale, grouped under headers (e.g. by category).

    Build it with :func:`highlight_texts` or :func:`highlight_feature`.
    """

    rows: list[TokenHighlight]
    vmax: float
    """Activation drawn at full colour, shared by every row."""
    groups: list[str] | None = None
    """Header of each row; consecutive rows with the same group share one header."""
    title: str = ""
    label: str = "activation"
    color: RGB = DEFAULT_COLOR
    """Colour of the legend (rows may be muted, see :func:`highlight_texts`)."""
    group_colors: Mapping[str, str] = field(default_factory=dict)
    """Colour of each group header's side bar (CSS colour)."""
    group_rows: bool = True
    """True: one header per run of rows with the same group. False: rows keep their order
    and each shows its group as a tag (for rankings such as top examples)."""

    def __post_init__(self) -> None:
        if self.groups is not None and len(self.groups) != len(self.rows):
            raise ValueError(f"groups ({len(self.groups)}) and rows ({len(self.rows)}) must have the same length")

    def fragment(self) -> str:
        parts = [f'<div class="saelab-title">{html.escape(self.title)}</div>'] if self.title else []
        parts.append(legend_html(self.vmax, self.color, self.label))
        previous = None
        for i, row in enumerate(self.rows):
            group = self.groups[i] if self.groups is not None else None
            tag = ""
            if group is not None:
                color = html.escape(self.group_colors.get(group, "#999"), quote=True)
                if not self.group_rows:
                    tag = f'<span class="saelab-tag" style="color: {color}">{html.escape(group)}</span> '
                elif group != previous:
                    parts.append(
                        f'<div class="saelab-group" style="border-left-color: {color}">{html.escape(group)}</div>'
                    )
            previous = group
            meta_class = "saelab-meta tagged" if tag else "saelab-meta"
            parts.append(
                f'<div class="saelab-row"><div class="{meta_class}">{tag}max {format_value(row.max_value)}</div>'
                f'<div class="saelab-text">{row.spans()}</div></div>'
            )
        return f'<div class="saelab-hl">{"".join(parts)}</div>'


def highlight_texts(
    tokens: Sequence[Sequence[str]],
    values: Sequence[Float[Tensor | np.ndarray, " pos"] | Sequence[float]],
    groups: Sequence[str] | None = None,
    *,
    title: str = "",
    label: str = "activation",
    vmax: float | None = None,
    color: RGB = DEFAULT_COLOR,
    target: str | None = None,
    muted_color: RGB = MUTED_COLOR,
    group_rows: bool = True,
) -> HighlightedTexts:
    """Highlight many texts on one scale (``vmax`` defaults to the maximum over all of them).

    With ``groups``, rows are gathered by group (first-seen order, stable within a group)
    under one header each, or, with ``group_rows=False``, keep their order and carry their
    group as a tag. With ``target``, texts outside that group are shaded in ``muted_color``
    so in-category and out-of-category activations are told apart at a glance.
    """
    if len(tokens) != len(values):
        raise ValueError(f"tokens ({len(tokens)} texts) and values ({len(values)} texts) must have the same length")
    if not tokens:
        raise ValueError("no texts to highlight")
    if groups is not None and len(groups) != len(tokens):
        raise ValueError(f"groups ({len(groups)}) must have one entry per text ({len(tokens)})")
    if target is not None and groups is None:
        raise ValueError(f"target={target!r} needs groups (one per text) to compare it with")
    arrays = [as_finite_array(v, f"values[{i}]", ndim=1) if len(v) else np.zeros(0) for i, v in enumerate(values)]
    shared = _resolve_vmax(np.concatenate(arrays), vmax)
    order = list(range(len(tokens)))
    if groups is not None and group_rows:
        first_seen = {g: i for i, g in reversed(list(enumerate(groups)))}
        order.sort(key=lambda i: first_seen[groups[i]])
    rows = [
        TokenHighlight(
            tokens[i],
            arrays[i],
            vmax=shared,
            label=label,
            legend=False,
            color=muted_color if target is not None and groups[i] != target else color,
        )
        for i in order
    ]
    ordered_groups = [str(groups[i]) for i in order] if groups is not None else None
    colors = {g: category_color(g) for g in set(ordered_groups or [])}
    return HighlightedTexts(
        rows=rows,
        vmax=shared,
        groups=ordered_groups,
        title=title,
        label=label,
        color=color,
        group_colors=colors,
        group_rows=group_rows,
    )


def feature_token_values(per_token: PerTokenFeatures, feature: int) -> list[np.ndarray]:
    """One feature's activation on every token of every text, as float64 numpy arrays."""
    return [values.double().numpy() for values in per_token.feature(feature)]


def highlight_feature(
    per_token: PerTokenFeatures,
    feature: int,
    groups: Sequence[str] | None = None,
    *,
    texts: Sequence[int] | None = None,
    title: str | None = None,
    **kwargs: Any,
) -> HighlightedTexts:
    """A feature's activation over many texts (all, or the indices in ``texts``), e.g. one block per category.

    ``kwargs`` go to :func:`highlight_texts` (``target=``, ``vmax=``, ``color=`` ...).
    """
    values = feature_token_values(per_token, feature)
    idx = list(range(per_token.n_texts)) if texts is None else [int(i) for i in texts]
    bad = [i for i in idx if not 0 <= i < per_token.n_texts]
    if bad:
        raise ValueError(f"text indices {bad[:10]} are out of range for {per_token.n_texts} texts")
    if groups is not None and len(groups) != per_token.n_texts:
        raise ValueError(f"groups ({len(groups)}) must have one entry per text ({per_token.n_texts})")
    return highlight_texts(
        [per_token.tokens[i] for i in idx],
        [values[i] for i in idx],
        [groups[i] for i in idx] if groups is not None else None,
        title=f"Feature {feature}" if title is None else title,
        label=f"feature {feature}",
        **kwargs,
    )


# ---------------------------------------------------------------------------------------
# Data behind the explorers.


@dataclass(frozen=True)
class SAEFeatures:
    """One SAE's features on the explorer's texts."""

    sae: SAE
    pooled: Float[Tensor, "n_texts d_sae"]
    """Pooled over each text's tokens (mean by default; see :meth:`ExplorerData.build`)."""
    per_token: PerTokenFeatures
    """The same texts, token by token (for highlighting and top examples)."""


@dataclass
class ExplorerData:
    """Everything :class:`FeatureExplorer` shows, computed once up front.

    ``features`` maps a display name (e.g. "layer 20") to that SAE's activations on
    ``texts``; ``labels[i]`` is text i's category; ``model`` (optional) powers the logit lens.
    """

    texts: list[str]
    labels: list[str]
    features: dict[str, SAEFeatures]
    model: HookedTransformer | None = None

    def __post_init__(self) -> None:
        self.texts, self.labels = list(self.texts), [str(c) for c in self.labels]
        if not self.texts:
            raise ValueError("ExplorerData needs at least one text")
        if len(self.labels) != len(self.texts):
            raise ValueError(f"labels ({len(self.labels)}) must have one entry per text ({len(self.texts)})")
        if not self.features:
            raise ValueError("ExplorerData needs at least one SAE in features")
        for name, entry in self.features.items():
            d_sae = int(entry.sae.cfg.d_sae)
            if tuple(entry.pooled.shape) != (len(self.texts), d_sae):
                raise ValueError(
                    f"{name!r}: pooled has shape {tuple(entry.pooled.shape)}, expected "
                    f"[n_texts={len(self.texts)}, d_sae={d_sae}]"
                )
            if entry.per_token.n_texts != len(self.texts) or entry.per_token.d_sae != d_sae:
                raise ValueError(
                    f"{name!r}: per_token covers {entry.per_token.n_texts} texts x {entry.per_token.d_sae} "
                    f"features, expected {len(self.texts)} x {d_sae}"
                )

    @property
    def names(self) -> list[str]:
        return list(self.features)

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(self.labels))

    @classmethod
    def build(
        cls,
        model: HookedTransformer,
        saes: Mapping[str, SAE],
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        pooling: Literal["mean", "max", "sum"] = "mean",
        batch_size: int = 16,
        use_cache: bool = True,
        progress: bool | None = None,
    ) -> ExplorerData:
        """Per-token features of ``texts`` for every SAE (one model pass for all of them, or
        none when :mod:`saelab.cache` already has them and ``use_cache``), pooled from the
        per-token ones (same masking: no pads, no BOS), so they equal
        ``extract_features(..., pooling=pooling)`` without a second model pass."""
        from saelab.cache import cached_per_token
        from saelab.extract import extract_features_multi

        if len(labels) != len(texts):
            raise ValueError(f"labels ({len(labels)}) must have one entry per text ({len(texts)})")
        if use_cache:
            per_token = cached_per_token(model, saes, texts, batch_size=batch_size, progress=progress)
        else:
            per_token = extract_features_multi(
                model, saes, texts, pooling=None, batch_size=batch_size, progress=progress
            )
        return cls.from_per_token(saes, per_token, texts, labels, model=model, pooling=pooling)

    @classmethod
    def from_per_token(
        cls,
        saes: Mapping[str, SAE],
        per_token: Mapping[str, PerTokenFeatures],
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        model: HookedTransformer | None = None,
        pooling: Literal["mean", "max", "sum"] = "mean",
    ) -> ExplorerData:
        """From per-token features already at hand (e.g. from :func:`saelab.cache.cached_per_token`)."""
        missing = [name for name in saes if name not in per_token]
        if missing:
            raise ValueError(f"per_token has no entry for {missing}; give one per SAE")
        features = {
            name: SAEFeatures(sae=sae, pooled=per_token[name].pool(pooling), per_token=per_token[name])
            for name, sae in saes.items()
        }
        return cls(texts=list(texts), labels=list(labels), features=features, model=model)


def text_max(per_token: PerTokenFeatures, feature: int) -> Float[np.ndarray, " n_texts"]:
    """Each text's largest activation of ``feature`` over its tokens (0 where it never fires)."""
    return per_token.text_max(feature).double().numpy()


# ---------------------------------------------------------------------------------------
# Feature explorer.

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
        n_ranked: int = 20,
        n_examples: int = 8,
        specialist_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if n_ranked < 1 or n_examples < 1:
            raise ValueError(f"n_ranked and n_examples must be >= 1, got {n_ranked} and {n_examples}")
        self.data = data
        self.n_ranked, self.n_examples = n_ranked, n_examples
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
        return int(self.data.features[name].sae.cfg.d_sae)

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
        if name not in self.data.features:
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
        from saelab import analysis

        pooled = self.data.features[sae].pooled
        if rank_by == "specialist":
            chosen = None if category == ALL_TEXTS else [category]
            table = analysis.specialists(
                pooled, self.data.labels, top=self.n_ranked, categories=chosen, **self.specialist_kwargs
            )
            table = table.sort_values(["auroc", "seed_score"], ascending=False, kind="stable")
            return table.drop_duplicates("feature").head(self.n_ranked).reset_index(drop=True)
        feats = pooled.numpy()
        if category != ALL_TEXTS:
            feats = feats[np.asarray(self.data.labels) == category]
        rank = getattr(analysis, rank_by)  # the other ranking names are saelab.analysis functions
        return rank(feats, top=self.n_ranked)

    def _refresh_ranking(self) -> None:
        view = self.view
        self.ranked = self.ranking(view.sae, view.rank_by, view.category)
        column = RANKINGS[view.rank_by]
        fmt = "{:.0%}" if column == "frequency" else "{:.3g}"
        labels = [
            f"#{int(f)} · {plots.value_label(column)} {fmt.format(v)}"
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
        from saelab import analysis

        view = self.view
        entry = self.data.features[view.sae]
        self.summary = analysis.feature_summary(
            entry.sae,
            view.feature,
            pooled=entry.pooled,
            per_token=entry.per_token,
            model=self.data.model,
            labels=self.data.labels,
        )
        peaks = text_max(entry.per_token, view.feature)
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
            "categories": plots.category_bar(
                summary.category_means,
                highlight=highlight,
                title=f"Feature #{view.feature}: mean activation by category",
            )
        }
        if summary.histogram is not None:
            figures["histogram"] = plots.density_histogram(
                summary.histogram, title=f"Feature #{view.feature}: non-zero activations per token"
            )
        if summary.logit_lens is not None:
            figures["logit_lens"] = plots.logit_lens_bar(
                summary.logit_lens, title=f"Feature #{view.feature}: logit lens (tokens promoted / suppressed)"
            )
        for name in ("categories", "histogram"):
            if name in figures:
                figures[name].update_layout(height=340)
        return figures

    def _build_examples(self, view: ExplorerView, peaks: Float[np.ndarray, " n_texts"]) -> HighlightedTexts | None:
        entry = self.data.features[view.sae]
        order = np.argsort(-peaks, kind="stable")[: self.n_examples]
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
        column = self.data.features[view.sae].pooled[:, view.feature].numpy()
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
            blocks = [f'<div class="saelab-figure">{svg}</div>' for svg in plots.figures_to_svg(figs)]
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
        path.write_text(_document(f"{view.sae} · feature #{view.feature}", body), encoding="utf-8")
        return path


# ---------------------------------------------------------------------------------------
# Text explorer.


class TextExplorer:
    """Type a text, see the features that fire on it most, each with its tokens highlighted.

    ``encode_fn`` maps a one-element list of texts to its per-token features, e.g.
    ``functools.partial(saelab.extract_features, model, sae, pooling=None)``.
    ``set_text(text)`` drives it from code; :attr:`top_features` holds the ranking
    (rank, feature, max_activation, mean_activation, n_tokens_active) and
    :attr:`highlights` one ``TokenHighlight`` per listed feature.
    """

    def __init__(
        self,
        encode_fn: Callable[[list[str]], PerTokenFeatures],
        top: int = 10,
        *,
        neuronpedia: Callable[[int], str | None] | None = None,
    ) -> None:
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        self.encode_fn, self.top, self.neuronpedia = encode_fn, top, neuronpedia
        self.text_input = ipw.Textarea(
            placeholder="Type or paste a text…", layout=ipw.Layout(width="100%", height="90px")
        )
        self.button = ipw.Button(description="Show features", button_style="primary")
        self.output = ipw.HTML()
        self.widget = ipw.VBox([self.text_input, self.button, self.output])
        self.text: str | None = None
        self.top_features = pd.DataFrame()
        self.highlights: list[TokenHighlight] = []
        self.button.on_click(self._on_click)

    def _on_click(self, _button: ipw.Button) -> None:
        try:
            self.set_text(self.text_input.value)
        except ValueError as err:
            self.output.value = f"<p style='color: #b00'>{html.escape(str(err))}</p>"

    def set_text(self, text: str) -> TextExplorer:
        """Encode ``text`` and show its top features."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty; type a text to see which features fire on it")
        per_token = self.encode_fn([text])
        if per_token.n_texts != 1:
            raise ValueError(
                f"encode_fn returned {per_token.n_texts} texts for one; it must encode exactly the list it gets"
            )
        self.text_input.value = text
        self.text = text
        self.top_features = rank_text_features(per_token, self.top)
        dense = per_token.dense(0).numpy()[:, self.top_features["feature"].to_numpy()]
        self.highlights = [
            TokenHighlight(
                per_token.tokens[0], dense[:, j], title=self._title(row), label=f"feature {int(row.feature)}"
            )
            for j, row in enumerate(self.top_features.itertuples())
        ]
        self.output.value = self._html(len(per_token.tokens[0]))
        return self

    def _title(self, row: Any) -> str:
        return (
            f"#{int(row.rank)} · feature {int(row.feature)} · max {format_value(row.max_activation)} · "
            f"active on {int(row.n_tokens_active)} token(s)"
        )

    def _html(self, n_tokens: int) -> str:
        if not self.highlights:
            return f"<p><i>No feature fires on any of the {n_tokens} tokens.</i></p>"
        blocks = []
        for feature, th in zip(self.top_features["feature"], self.highlights, strict=True):
            url = self.neuronpedia(int(feature)) if self.neuronpedia else None
            link = (
                f' <a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener">Neuronpedia</a>'
                if url
                else ""
            )
            blocks.append(th._repr_html_() + link)
        return f"<p>{n_tokens} tokens; top {len(self.highlights)} features by max activation.</p>" + "".join(blocks)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)


def rank_text_features(per_token: PerTokenFeatures, top: int = 10) -> pd.DataFrame:
    """Features of text 0 of ``per_token`` ranked by their largest activation on a token.

    Columns ``rank, feature, max_activation, mean_activation`` (over all its tokens) and
    ``n_tokens_active``; only features that fire. Vectorised over the non-zeros.
    """
    import torch

    start, end = int(per_token.text_row_start[0]), int(per_token.text_row_start[1])
    lo, hi = int(per_token.row_ptr[start]), int(per_token.row_ptr[end])
    feats, vals = per_token.feature_idx[lo:hi], per_token.values[lo:hi].double()
    peak = torch.zeros(per_token.d_sae, dtype=torch.float64).scatter_reduce_(0, feats, vals, reduce="amax")
    total = torch.zeros(per_token.d_sae, dtype=torch.float64).index_add_(0, feats, vals)
    count = torch.bincount(feats[vals > 0], minlength=per_token.d_sae)
    live = torch.nonzero(count > 0).squeeze(1)
    order = live[torch.argsort(-peak[live], stable=True)][:top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "feature": order.numpy(),
            "max_activation": peak[order].numpy(),
            "mean_activation": (total[order] / max(1, end - start)).numpy(),
            "n_tokens_active": count[order].numpy(),
        }
    )
