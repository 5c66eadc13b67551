"""saelab.viz.text_explorer: the text explorer shows a text's top features, highlighted token
by token, and reports bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab import viz
from tests.extract._helpers import hand_made_per_token
from tests.viz._helpers import data_values


def test_text_explorer_shows_the_top_features_of_a_text(tiny_model, saes):
    import functools

    import saelab

    encode = functools.partial(saelab.extract_per_token, tiny_model, saes["L4"])
    te = viz.TextExplorer(encode, top=3)
    text = "def area(r):\n    return 3.14 * r ** 2"
    te.set_text(text)
    dense = encode([text]).dense(0)
    peaks = dense.max(0).values
    assert te.top_features["feature"].tolist() == torch.argsort(-peaks, stable=True)[:3].tolist()
    np.testing.assert_allclose(te.top_features["max_activation"], peaks.sort(descending=True).values[:3], rtol=1e-6)
    assert len(te.highlights) == 3 and te.text_input.value == text
    top = int(te.top_features["feature"].iloc[0])
    np.testing.assert_allclose(data_values(te.highlights[0].fragment()), dense[:, top].numpy(), rtol=1e-5, atol=1e-6)
    assert f"feature {top}: " in te.output.value and "⏎" in te.output.value


def test_text_explorer_reports_bad_input(tiny_model, saes):
    te = viz.TextExplorer(lambda texts: None, top=2)
    with pytest.raises(ValueError, match="text is empty"):
        te.set_text("   ")
    te.text_input.value = ""
    te.button.click()
    assert "text is empty" in te.output.value
    two = viz.TextExplorer(lambda texts: hand_made_per_token())
    with pytest.raises(ValueError, match="returned 2 texts"):
        two.set_text("hello")
