"""saelab.widgets: token highlighting on hand-made tokens/values (HTML parsed, not eyeballed)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from saelab import widgets
from saelab.extract import PerTokenFeatures
from saelab.plots import CATEGORY_COLORS


class _Spans(HTMLParser):
    """Collects every <span class="tok">: its attributes and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict] = []
        self._depth = 0  # nesting inside the current token span (the ⏎ glyph is a child span)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "tok":
            self.spans.append({**attrs, "text": ""})
            self._depth = 1
        elif tag == "span" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "span" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.spans[-1]["text"] += data


def parse(fragment: str) -> _Spans:
    parser = _Spans()
    parser.feed(fragment)
    return parser


def alpha(span: dict) -> float:
    style = span["style"]
    return 0.0 if "transparent" in style else float(style.rsplit(",", 1)[1].rstrip(")"))


# ---------------------------------------------------------------------------------------
# TokenHighlight.


def test_opacity_is_value_over_vmax_clipped_and_values_on_hover():
    th = widgets.TokenHighlight(["a", "b", "c", "d"], [0.0, 1.5, 3.0, 6.0], vmax=3.0, label="feature 7")
    spans = parse(th.fragment()).spans
    assert [s["text"] for s in spans] == ["a", "b", "c", "d"]
    assert [alpha(s) for s in spans] == [0.0, 0.5, 1.0, 1.0]
    assert [s["data-value"] for s in spans] == ["0", "1.5", "3", "6"]
    assert spans[1]["title"] == spans[1]["data-tip"] == "feature 7: 1.50"
    assert "rgba(255,140,0,0.500)" in spans[1]["style"]


def test_default_vmax_is_the_text_maximum_and_legend_shows_it():
    th = widgets.TokenHighlight(["x", "y"], torch.tensor([1.0, 4.0]))
    assert th.vmax == 4.0
    assert [alpha(s) for s in parse(th.fragment()).spans] == [0.25, 1.0]
    assert 'class="saelab-legend"' in th.fragment() and "<span>4.00</span>" in th.fragment()
    silent = widgets.TokenHighlight(["x"], [0.0])
    assert silent.vmax == 1.0 and alpha(parse(silent.fragment()).spans[0]) == 0.0


def test_whitespace_stays_visible_and_html_is_escaped():
    th = widgets.TokenHighlight([" the", "):\n", "\tx", "<script>&"], [1, 2, 3, 4])
    fragment = th.fragment()
    spans = parse(fragment).spans
    assert spans[0]["text"] == " the"  # leading space kept (rendered with white-space: pre-wrap)
    assert spans[1]["text"] == "):⏎" and spans[2]["text"] == "⇥x"
    assert "⏎</span></span><br>" in fragment  # the newline still breaks the line
    assert spans[3]["text"] == "<script>&"  # shown literally...
    assert "<script>" not in fragment and "&lt;script&gt;&amp;" in fragment  # ...because escaped
    assert "white-space: pre-wrap" in widgets.CSS


def test_tooltip_css_shows_the_value_on_hover():
    assert ".tok:hover::after" in widgets.CSS and "attr(data-tip)" in widgets.CSS


def test_standalone_document_and_save(tmp_path):
    th = widgets.TokenHighlight(["a"], [1.0], title="Feature <3>")
    doc = th.html()
    assert doc.startswith("<!DOCTYPE html>") and "<style>" in doc and '<meta charset="utf-8">' in doc
    assert "<title>Feature &lt;3&gt;</title>" in doc
    assert "<script" not in doc and "http" not in doc  # nothing to run, nothing to fetch
    path = th.save(tmp_path / "sub" / "th.html")
    assert path.read_text(encoding="utf-8") == doc
    assert th._repr_html_().startswith("<style>") and th.fragment() in th._repr_html_()
    assert widgets.token_highlight_html(["a"], [1.0], title="Feature <3>") == th._repr_html_()


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
        widgets.TokenHighlight(**kwargs)


# ---------------------------------------------------------------------------------------
# Many texts.


def test_highlight_texts_groups_rows_and_shares_one_scale():
    block = widgets.highlight_texts(
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
        widgets.highlight_texts(**kwargs)


def _per_token() -> PerTokenFeatures:
    """Two texts (2 and 3 tokens), d_sae=4; feature 2 fires on text0/tok1 (5.0) and text1/tok2 (1.0)."""
    dense = [
        torch.tensor([[1.0, 0, 0, 0], [0, 0, 5.0, 0]]),
        torch.tensor([[0, 0, 0, 2.0], [0, 0, 0, 0], [0, 3.0, 1.0, 0]]),
    ]
    rows = torch.cat(dense)
    r, c = rows.nonzero(as_tuple=True)
    return PerTokenFeatures(
        tokens=[["Hi", " there"], ["x", " =", " 1"]],
        token_ids=[[1, 2], [3, 4, 5]],
        d_sae=4,
        row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(r, minlength=5), 0)]),
        feature_idx=c,
        values=rows[r, c],
        text_row_start=torch.tensor([0, 2, 5]),
    )


def test_feature_token_values_matches_the_dense_rows():
    per_token = _per_token()
    for f in range(4):
        got = widgets.feature_token_values(per_token, f)
        for i in range(2):
            np.testing.assert_array_equal(got[i], per_token.dense(i)[:, f].numpy())
    assert [v.tolist() for v in widgets.feature_token_values(per_token, 2)] == [[0.0, 5.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="out of range for d_sae=4"):
        widgets.feature_token_values(per_token, 4)


def test_highlight_feature_over_chosen_texts():
    block = widgets.highlight_feature(_per_token(), 2, groups=["social", "math"], texts=[1, 0])
    spans = parse(block.fragment()).spans
    assert [s["text"] for s in spans] == ["x", " =", " 1", "Hi", " there"]
    assert [s["data-value"] for s in spans] == ["0", "0", "1", "0", "5"]
    assert spans[2]["title"] == "feature 2: 1.00"
    assert block.title == "Feature 2"
    with pytest.raises(ValueError, match="out of range for 2 texts"):
        widgets.highlight_feature(_per_token(), 2, texts=[2])


# ---------------------------------------------------------------------------------------
# Sparse helpers behind the explorers (hand-made per-token features, known answers).


def test_pooling_the_explorer_uses_known_answers():
    per_token = _per_token()
    torch.testing.assert_close(per_token.pool("mean"), torch.tensor([[0.5, 0, 2.5, 0], [0, 1.0, 1 / 3, 2 / 3]]))
    torch.testing.assert_close(per_token.pool("max"), torch.tensor([[1.0, 0, 5, 0], [0, 3, 1, 2]]))
    torch.testing.assert_close(per_token.pool("sum"), torch.tensor([[1.0, 0, 5, 0], [0, 3, 1, 2]]))


def test_text_max_and_rank_text_features_known_answers():
    per_token = _per_token()
    assert widgets.text_max(per_token, 2).tolist() == [5.0, 1.0]
    assert widgets.text_max(per_token, 1).tolist() == [0.0, 3.0]
    ranked = widgets.rank_text_features(per_token, top=5)  # text 0: feature 2 (5.0), feature 0 (1.0)
    assert ranked["feature"].tolist() == [2, 0]
    assert ranked["rank"].tolist() == [1, 2]
    assert ranked["max_activation"].tolist() == [5.0, 1.0]
    assert ranked["mean_activation"].tolist() == [2.5, 0.5]
    assert ranked["n_tokens_active"].tolist() == [1, 1]
    assert widgets.rank_text_features(per_token, top=1)["feature"].tolist() == [2]


# ---------------------------------------------------------------------------------------
# Explorers on the real model with small random SAEs.

TEXTS = [
    "def add(a, b):\n    return a + b",
    "for i in range(10): print(i)",
    "x^2 + 2x + 1 = 0",
    "The integral of x dx is x^2/2.",
    "Bonjour, comment allez-vous ?",
    "Hola, ¿qué tal estás hoy?",
    "lol this is so funny #win",
    "omg cant wait for the weekend!!!",
    "Pursuant to section 4, the parties agree as follows.",
    "Hey, do you want to grab lunch later?",
]
LABELS = [
    "python",
    "python",
    "math",
    "math",
    "non_english",
    "non_english",
    "social",
    "social",
    "formal",
    "conversational",
]


@pytest.fixture(scope="module")
def saes(model, make_sae):
    d = model.cfg.d_model
    return {
        "L2": make_sae(d, 32, "blocks.2.hook_resid_pre", seed=3),
        "L4": make_sae(d, 48, "blocks.4.hook_resid_pre", seed=4),
    }


@pytest.fixture(scope="module")
def data(model, saes):
    return widgets.ExplorerData.build(model, saes, TEXTS, LABELS, use_cache=False)


def test_explorer_data_matches_extract_features(model, saes, data):
    import saelab

    assert data.names == ["L2", "L4"]
    assert data.categories == ["python", "math", "non_english", "social", "formal", "conversational"]
    entry = data.features["L4"]  # the deeper hook: the shared model pass must reach it
    torch.testing.assert_close(entry.pooled, saelab.extract_features(model, saes["L4"], TEXTS), atol=1e-5, rtol=1e-5)
    alone = saelab.extract_features(model, saes["L4"], TEXTS, pooling=None)
    assert entry.per_token.tokens == alone.tokens
    torch.testing.assert_close(entry.per_token.values, alone.values)
    assert entry.pooled.abs().max() > 0.1  # not comparing zeros
    assert data.features["L2"].pooled.shape == (len(TEXTS), 32)


def test_explorer_data_build_reads_the_feature_cache(model, saes, data, tmp_path, monkeypatch):
    from saelab import cache

    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    first = widgets.ExplorerData.build(model, saes, TEXTS, LABELS)
    assert len(list((tmp_path / "features").iterdir())) == len(saes)

    def fail(*args, **kwargs):
        raise AssertionError("the model ran although the features were cached")

    monkeypatch.setattr(cache, "extract_features_multi", fail)
    again = widgets.ExplorerData.build(model, saes, TEXTS, LABELS)
    for name in saes:
        torch.testing.assert_close(again.features[name].pooled, first.features[name].pooled)
        torch.testing.assert_close(again.features[name].pooled, data.features[name].pooled)


def test_explorer_data_rejects_inconsistent_parts(model, saes, data):
    with pytest.raises(ValueError, match="one entry per text"):
        widgets.ExplorerData.build(model, saes, TEXTS, LABELS[:-1], use_cache=False)
    entry = data.features["L2"]
    short = widgets.SAEFeatures(sae=entry.sae, pooled=entry.pooled[:3], per_token=entry.per_token)
    with pytest.raises(ValueError, match="pooled has shape \\(3, 32\\)"):
        widgets.ExplorerData(texts=TEXTS, labels=LABELS, features={"L2": short})


def _data_values(fragment: str) -> list[float]:
    return [float(s["data-value"]) for s in parse(fragment).spans]


def _expected_examples(data, sae: str, feature: int, k: int = 8) -> list[int]:
    """Texts by their largest per-token activation of ``feature``, from dense rows (reference)."""
    per_token = data.features[sae].per_token
    peaks = np.array([per_token.dense(i)[:, feature].max().item() for i in range(per_token.n_texts)])
    order = np.argsort(-peaks, kind="stable")[:k]
    return [int(i) for i in order if peaks[i] > 0]


def test_feature_explorer_starts_on_the_strongest_feature(data):
    ex = widgets.FeatureExplorer(data)
    pooled = data.features["L2"].pooled
    assert ex.view == widgets.ExplorerView(
        sae="L2", feature=int(pooled.max(0).values.argmax()), category="all texts", rank_by="strongest"
    )
    assert ex.feature_input.max == 31
    assert ex.ranked_select.value == ex.view.feature
    assert [value for _, value in ex.ranked_select.options][:3] == ex.ranked["feature"].tolist()[:3]
    assert widgets.NO_NEURONPEDIA in ex.header.value
    assert set(ex.figures) == {"histogram", "categories", "logit_lens"}
    assert ex.figure_outputs["categories"].outputs[0]["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()


def test_select_updates_every_panel(data):
    ex = widgets.FeatureExplorer(data)
    feature = int(data.features["L2"].pooled.sum(0).argsort()[-2])  # a feature that fires somewhere
    ex.select(feature=feature)
    assert ex.view.feature == feature and ex.summary.feature == feature
    assert f"feature #{feature}" in ex.header.value
    # Category bar: the pooled mean per category, by hand.
    pooled = data.features["L2"].pooled[:, feature].numpy()
    by_hand = [pooled[np.asarray(LABELS) == c].mean() for c in data.categories]
    np.testing.assert_allclose(ex.figures["categories"].data[0].y, by_hand, rtol=1e-6)
    # Top examples: the right texts in the right order, with this feature's token values.
    order = _expected_examples(data, "L2", feature)
    per_token = data.features["L2"].per_token
    expected = np.concatenate([per_token.dense(i)[:, feature].numpy() for i in order])
    np.testing.assert_allclose(_data_values(ex.examples_html.value), expected, rtol=1e-5, atol=1e-6)
    assert parse(ex.examples_html.value).spans[0]["title"].startswith(f"feature {feature}: ")


def test_widget_controls_drive_the_explorer(data):
    ex = widgets.FeatureExplorer(data)
    ex.feature_input.value = 5
    assert ex.summary.feature == 5 and "feature #5" in ex.header.value
    second = ex.ranked_select.options[1][1]
    ex.ranked_select.value = second
    assert ex.view.feature == second and ex.feature_input.value == second
    ex.sae_select.value = "L4"
    assert ex.feature_input.max == 47 and ex.summary.d_sae == 48
    assert "L4 · feature" in ex.header.value


def test_category_changes_the_ranking_and_the_highlighting(data):
    ex = widgets.FeatureExplorer(data)
    ex.category_select.value = "math"
    math_rows = data.features["L2"].pooled[torch.tensor([2, 3])]
    by_hand = torch.argsort(-math_rows.max(0).values, stable=True)[: ex.n_ranked].tolist()
    assert ex.ranked["feature"].tolist() == by_hand
    assert [value for _, value in ex.ranked_select.options] == by_hand
    # Texts outside the chosen category are drawn grey, math ones orange.
    fragment = ex.examples_html.value
    rows = fragment.split('class="saelab-row"')[1:]
    assert any(">math</span>" in r and "rgba(255,140,0" in r for r in rows)
    assert all("rgba(255,140,0" not in r for r in rows if ">math</span>" not in r)
    assert list(ex.figures["categories"].data[0].marker.line.width) == [0, 3, 0, 0, 0, 0]


def test_specialist_ranking_for_a_category(data):
    ex = widgets.FeatureExplorer(data, specialist_kwargs={"n_permutations": 200})
    ex.select(category="python", rank_by="specialist")
    assert set(ex.ranked["category"]) == {"python"}
    assert ex.ranked["auroc"].is_monotonic_decreasing
    assert all(label.endswith("(python)") for label, _ in ex.ranked_select.options)


def test_select_rejects_unknown_choices(data):
    ex = widgets.FeatureExplorer(data)
    with pytest.raises(ValueError, match="Unknown SAE 'L9'; valid: \\['L2', 'L4'\\]"):
        ex.select(sae="L9")
    with pytest.raises(ValueError, match="Unknown category 'poetry'"):
        ex.select(category="poetry")
    with pytest.raises(ValueError, match="out of range for 'L2' \\(d_sae=32\\)"):
        ex.select(feature=32)
    with pytest.raises(ValueError, match="Unknown ranking"):
        ex.select(rank_by="loudest")


def test_neuronpedia_link_when_the_sae_has_an_id(model, make_sae):
    from saelab.saes import sae_neuronpedia_url

    sae = make_sae(model.cfg.d_model, 16, "blocks.2.hook_resid_pre", seed=5)
    sae.cfg.metadata.neuronpedia_id = "smollm2-135m/2-test"
    ex = widgets.FeatureExplorer(widgets.ExplorerData.build(model, {"L2": sae}, TEXTS, LABELS, use_cache=False)).select(feature=7)
    assert f'href="{sae_neuronpedia_url(sae, 7)}"' in ex.header.value
    assert widgets.NO_NEURONPEDIA not in ex.header.value


def test_to_html_is_self_contained(data, tmp_path):
    ex = widgets.FeatureExplorer(data).select(feature=int(data.features["L2"].pooled.sum(0).argmax()))
    page = ex.to_html(tmp_path / "explorer.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined, nothing is fetched
    assert page.count("Plotly.newPlot") == 3
    assert ex.examples.fragment() in page and widgets.NO_NEURONPEDIA in page
    with pytest.raises(ValueError, match="figures must be"):
        ex.to_html(tmp_path / "x.html", figures="png")


@pytest.mark.slow
def test_to_html_with_inline_svg(data, tmp_path):
    from saelab.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium for kaleido")
    page = widgets.FeatureExplorer(data).to_html(tmp_path / "explorer.html", figures="svg").read_text(encoding="utf-8")
    assert page.count("<svg") >= 3 and "<script" not in page


def test_text_explorer_shows_the_top_features_of_a_text(model, saes):
    import functools

    import saelab

    encode = functools.partial(saelab.extract_features, model, saes["L4"], pooling=None)
    te = widgets.TextExplorer(encode, top=3)
    text = "def area(r):\n    return 3.14 * r ** 2"
    te.set_text(text)
    dense = encode([text]).dense(0)
    peaks = dense.max(0).values
    assert te.top_features["feature"].tolist() == torch.argsort(-peaks, stable=True)[:3].tolist()
    np.testing.assert_allclose(te.top_features["max_activation"], peaks.sort(descending=True).values[:3], rtol=1e-6)
    assert len(te.highlights) == 3 and te.text_input.value == text
    top = int(te.top_features["feature"].iloc[0])
    np.testing.assert_allclose(_data_values(te.highlights[0].fragment()), dense[:, top].numpy(), rtol=1e-5, atol=1e-6)
    assert f"feature {top}: " in te.output.value and "⏎" in te.output.value


def test_text_explorer_reports_bad_input(model, saes):
    te = widgets.TextExplorer(lambda texts: None, top=2)
    with pytest.raises(ValueError, match="text is empty"):
        te.set_text("   ")
    te.text_input.value = ""
    te.button.click()
    assert "text is empty" in te.output.value
    two = widgets.TextExplorer(lambda texts: _per_token())
    with pytest.raises(ValueError, match="returned 2 texts"):
        two.set_text("hello")


def test_token_split_across_a_character_is_drawn_as_one_span():
    # token_strings gives "" for a token holding only the first bytes of a character ("😂"
    # spread over two tokens); the view draws them as one span at the larger value.
    view = widgets.TokenHighlight([" ha", "", "😂", "!"], [1.0, 0.5, 4.0, 0.0], label="feature 3")
    spans = parse(view.fragment()).spans
    assert [s["text"] for s in spans] == [" ha", "😂", "!"]
    assert [s["data-value"] for s in spans] == ["1", "4", "0"]
    assert spans[1]["title"] == "feature 3: 4.00 (2 tokens: 0.50, 4.00)"
    tail = parse(widgets.TokenHighlight(["a", ""], [1.0, 2.0]).fragment()).spans
    assert [s["text"] for s in tail] == ["a", "\ufffd"] and tail[1]["data-value"] == "2"


def test_token_strings_rebuild_split_characters(model):
    from saelab.extract import token_strings

    text = "ça va 😂 中文 Привет"
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    shown = token_strings(model, ids)
    assert "".join(shown) == text and "\ufffd" not in "".join(shown)
    assert "😂" in shown and "П" in shown
    alone = token_strings(model, ids, contiguous=False)
    assert any("\\x" in piece for piece in alone)  # partial characters shown as escaped bytes
