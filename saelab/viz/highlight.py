"""Token highlighting: precomputed activations in, standalone HTML out.

Following Anthropic's feature pages, every token is shaded with an opacity proportional to
its activation, the exact value shows on hover (a ``title`` attribute for the native tooltip
and a CSS tooltip that appears at once), a colour-scale legend sits above the text, and
newlines/tabs stay visible (⏎, ⇥) while leading spaces are preserved. Each view renders to a
standalone HTML document (``.html()``, ``.save(path)``) with no scripts and no network, and
to Jupyter through ``_repr_html_``. The styles live in ``highlight.css`` beside this file.
"""

from __future__ import annotations

import html
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from saelab._util.atomic import atomic_write_text
from saelab.viz.style import as_finite_array, category_color

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

    from saelab.extract.per_token import PerTokenFeatures

RGB = tuple[int, int, int]
DEFAULT_COLOR: RGB = (255, 140, 0)
"""Orange, as in the highlighting the first notebooks of this series used."""
MUTED_COLOR: RGB = (150, 150, 150)
"""Grey for texts outside the category a specialist is meant to detect."""

CSS = (Path(__file__).with_name("highlight.css")).read_text(encoding="utf-8")
"""The styles of every highlighted view (``highlight.css``), inlined into each page."""

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


def html_document(title: str, body: str) -> str:
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
        return html_document(self._doc_title(), self.fragment())

    def save(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path`` (parent folders are created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.html())
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

    @property
    def _scale(self) -> float:
        return cast(float, self.vmax)  # cast: __post_init__ resolves a None vmax to a number

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
        alpha = float(np.clip(value / self._scale, 0.0, 1.0))
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
        legend = legend_html(self._scale, self.color, self.label) if self.legend else ""
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
            # groups is given whenever target is (checked above).
            color=muted_color if target is not None and groups is not None and groups[i] != target else color,
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
