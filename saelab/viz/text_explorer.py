"""The text explorer (ipywidgets): type a text, see the features that fire on it most, each
with the text's tokens highlighted."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as ipw
import pandas as pd

from saelab.analysis.max_activating import rank_text_features
from saelab.viz.highlight import TokenHighlight, format_value

if TYPE_CHECKING:
    from saelab.extract.per_token import PerTokenFeatures


class TextExplorer:
    """Type a text, see the features that fire on it most, each with its tokens highlighted.

    ``encode_fn`` maps a one-element list of texts to its per-token features, e.g.
    ``functools.partial(saelab.extract_per_token, model, sae)``.
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
                per_token.tokens[0], dense[:, j], title=self._title(row), label=f"feature {int(row['feature'])}"
            )
            for j, row in enumerate(self.top_features.to_dict("records"))
        ]
        self.output.value = self._html(len(per_token.tokens[0]))
        return self

    def _title(self, row: dict[str, Any]) -> str:
        return (
            f"#{int(row['rank'])} · feature {int(row['feature'])} · max {format_value(row['max_activation'])} · "
            f"active on {int(row['n_tokens_active'])} token(s)"
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
