"""saelab.viz.highlight: token highlighting on hand-made tokens and values, one text or many,
or one feature of per-token features (HTML parsed, not eyeballed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab import viz
from saelab.viz import highlight
from saelab.viz.highlight import token_highlight_html
from saelab.viz.style import CATEGORY_COLORS
from tests.extract._helpers import hand_made_per_token
from tests.viz._helpers import alpha, parse

# ---------------------------------------------------------------------------------------
# TokenHighlight.


def test_opacity_is_value_over_vmax_clipped_and_values_on_hover():
    th = viz.TokenHighlight(["a", "b", "c", "d"], [0.0, 1.5, 3.0, 6.0], vmax=3.0, label="feature 7")
    spans = parse(th.fragment()).spans
    assert [s["text"] for s in spans] == ["a", "b", "c", "d"]
    assert [alpha(s) for s in spans] == [0.0, 0.5, 1.0, 1.0]
    assert [s["data-value"] for s in spans] == ["0", "1.5", "3", "6"]
    assert spans[1]["title"] == spans[1]["data-tip"] == "feature 7: 1.50"
    assert "rgba(255,140,0,0.500)" in spans[1]["style"]


def test_default_vmax_is_the_text_maximum_and_legend_shows_it():
    th = viz.TokenHighlight(["x", "y"], torch.tensor([1.0, 4.0]))
    assert th.vmax == 4.0
    assert [alpha(s) for s in parse(th.fragment()).spans] == [0.25, 1.0]
    assert 'class="saelab-legend"' in th.fragment() and "<span>4.00</span>" in th.fragment()
    silent = viz.TokenHighlight(["x"], [0.0])
    assert silent.vmax == 1.0 and alpha(parse(silent.fragment()).spans[0]) == 0.0


def test_whitespace_stays_visible_and_html_is_escaped():
    th = viz.TokenHighlight([" the", "):\n", "\tx", "<script>&"], [1, 2, 3, 4])
    fragment = th.fragment()
    spans = parse(fragment).spans
    assert spans[0]["text"] == " the"  # leading space kept (rendered with white-space: pre-wrap)
    assert spans[1]["text"] == "):⏎" and spans[2]["text"] == "⇥x"
    assert "⏎</span></span><br>" in fragment  # the newline still breaks the line
    assert spans[3]["text"] == "<script>&"  # shown literally...
    assert "<script>" not in fragment and "&lt;script&gt;&amp;" in fragment  # ...because escaped
    assert "white-space: pre-wrap" in highlight.CSS


def test_tooltip_css_shows_the_value_on_hover():
    assert ".tok:hover::after" in highlight.CSS and "attr(data-tip)" in highlight.CSS


def test_standalone_document_and_save(tmp_path):
    th = viz.TokenHighlight(["a"], [1.0], title="Feature <3>")
    doc = th.html()
    assert doc.startswith("<!DOCTYPE html>") and "<style>" in doc and '<meta charset="utf-8">' in doc
    assert "<title>Feature &lt;3&gt;</title>" in doc
    assert "<script" not in doc and "http" not in doc  # nothing to run, nothing to fetch
    path = th.save(tmp_path / "sub" / "th.html")
    assert path.read_text(encoding="utf-8") == doc
    assert th._repr_html_().startswith("<style>") and th.fragment() in th._repr_html_()
    assert token_highlight_html(["a"], [1.0], title="Feature <3>") == th._repr_html_()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tokens=["a", "b"], values=[1.0]), "same length"),
        (dict(tokens=["a"], values=[float("nan")]), "NaN"),
        (dict(tokens=["a"], values=[1.0], vmax=0.0), "vmax must be a positive"),
        (dict(tokens=["a"], values=[1.0], color=(255, 0)), "color must be"),
        (dict(tokens=["a"], values=[[1.0]]), "1-D"),
    ],
)
def test_token_highlight_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.TokenHighlight(**kwargs)


def test_token_split_across_a_character_is_drawn_as_one_span():
    # token_strings gives "" for a token holding only the first bytes of a character ("😂"
    # spread over two tokens); the view draws them as one span at the larger value.
    view = viz.TokenHighlight([" ha", "", "😂", "!"], [1.0, 0.5, 4.0, 0.0], label="feature 3")
    spans = parse(view.fragment()).spans
    assert [s["text"] for s in spans] == [" ha", "😂", "!"]
    assert [s["data-value"] for s in spans] == ["1", "4", "0"]
    assert spans[1]["title"] == "feature 3: 4.00 (2 tokens: 0.50, 4.00)"
    tail = parse(viz.TokenHighlight(["a", ""], [1.0, 2.0]).fragment()).spans
    assert [s["text"] for s in tail] == ["a", "\ufffd"] and tail[1]["data-value"] == "2"


# ---------------------------------------------------------------------------------------
# Many texts.


def test_highlight_texts_groups_rows_and_shares_one_scale():
    block = viz.highlight_texts(
        [["a"], ["b"], ["c"]],
        [[1.0], [4.0], [2.0]],
        groups=["math", "python", "math"],
        target="math",
        title="Feature 3",
    )
    fragment = block.fragment()
    spans = parse(fragment).spans
    # Grouped in first-seen order (math, math, python), one header per group.
    assert [s["text"] for s in spans] == ["a", "c", "b"]
    assert fragment.count('class="saelab-group"') == 2
    assert fragment.index(">math</div>") < fragment.index(">python</div>")
    assert CATEGORY_COLORS["math"] in fragment
    # One scale: vmax is the max over all texts (4), so "c" (2) is half shaded.
    assert block.vmax == 4.0 and [alpha(s) for s in spans] == [0.25, 0.5, 1.0]
    # Out-of-target texts are grey, target texts orange.
    assert "rgba(150,150,150" in spans[2]["style"] and "rgba(255,140,0" in spans[0]["style"]
    assert fragment.count('class="saelab-legend"') == 1
    assert "max 4.00" in fragment


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tokens=[["a"]], values=[]), "same length"),
        (dict(tokens=[], values=[]), "no texts"),
        (dict(tokens=[["a"]], values=[[1.0]], groups=["x", "y"]), "one entry per text"),
        (dict(tokens=[["a"]], values=[[1.0]], target="y"), "target='y' needs groups"),
    ],
)
def test_highlight_texts_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.highlight_texts(**kwargs)


def test_feature_token_values_matches_the_dense_rows():
    per_token = hand_made_per_token()
    for f in range(4):
        got = highlight.feature_token_values(per_token, f)
        for i in range(2):
            np.testing.assert_array_equal(got[i], per_token.dense(i)[:, f].numpy())
    assert [v.tolist() for v in highlight.feature_token_values(per_token, 2)] == [[0.0, 5.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="out of range for d_sae=4"):
        highlight.feature_token_values(per_token, 4)


def test_highlight_feature_over_chosen_texts():
    block = viz.highlight_feature(hand_made_per_token(), 2, groups=["social", "math"], texts=[1, 0])
    spans = parse(block.fragment()).spans
    assert [s["text"] for s in spans] == ["x", " =", " 1", "Hi", " there"]
    assert [s["data-value"] for s in spans] == ["0", "0", "1", "0", "5"]
    assert spans[2]["title"] == "feature 2: 1.00"
    assert block.title == "Feature 2"
    with pytest.raises(ValueError, match="out of range for 2 texts"):
        viz.highlight_feature(hand_made_per_token(), 2, texts=[2])
