"""saelab.viz.feature_explorer: the feature explorer widget on the tiny model with small
random SAEs. Every control drives every panel, and to_html writes a self-contained page."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from saelab import viz
from saelab.viz import explorer_view
from tests.viz._helpers import LABELS, TEXTS, data_values, parse


def _expected_examples(data, sae: str, feature: int, k: int = 8) -> list[int]:
    """Texts by their largest per-token activation of ``feature``, from dense rows (reference)."""
    per_token = data.saes[sae].per_token
    peaks = np.array([per_token.dense(i)[:, feature].max().item() for i in range(per_token.n_texts)])
    order = np.argsort(-peaks, kind="stable")[:k]
    return [int(i) for i in order if peaks[i] > 0]


def test_feature_explorer_starts_on_the_strongest_feature(data):
    ex = viz.FeatureExplorer(data)
    pooled = data.saes["L2"].pooled
    assert ex.view == explorer_view.ExplorerView(
        sae="L2", feature=int(pooled.max(0).values.argmax()), category="all texts", rank_by="strongest"
    )
    assert ex.feature_input.max == 31
    assert ex.ranked_select.value == ex.view.feature
    assert [value for _, value in ex.ranked_select.options][:3] == ex.ranked["feature"].tolist()[:3]
    assert explorer_view.NO_NEURONPEDIA in ex.header.value
    assert set(ex.figures) == {"histogram", "categories", "logit_lens"}
    assert ex.figure_outputs["categories"].outputs[0]["output_type"] == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in ex._repr_mimebundle_()


def test_select_updates_every_panel(data):
    ex = viz.FeatureExplorer(data)
    feature = int(data.saes["L2"].pooled.sum(0).argsort()[-2])  # a feature that fires somewhere
    ex.select(feature=feature)
    assert ex.view.feature == feature and ex.summary.feature == feature
    assert f"feature #{feature}" in ex.header.value
    # Category bar: the pooled mean per category, by hand.
    pooled = data.saes["L2"].pooled[:, feature].numpy()
    by_hand = [pooled[np.asarray(LABELS) == c].mean() for c in data.categories]
    np.testing.assert_allclose(ex.figures["categories"].data[0].y, by_hand, rtol=1e-6)
    # Top examples: the right texts in the right order, with this feature's token values.
    order = _expected_examples(data, "L2", feature)
    per_token = data.saes["L2"].per_token
    expected = np.concatenate([per_token.dense(i)[:, feature].numpy() for i in order])
    np.testing.assert_allclose(data_values(ex.examples_html.value), expected, rtol=1e-5, atol=1e-6)
    assert parse(ex.examples_html.value).spans[0]["title"].startswith(f"feature {feature}: ")


def test_widget_controls_drive_the_explorer(data):
    ex = viz.FeatureExplorer(data)
    ex.feature_input.value = 5
    assert ex.summary.feature == 5 and "feature #5" in ex.header.value
    second = ex.ranked_select.options[1][1]
    ex.ranked_select.value = second
    assert ex.view.feature == second and ex.feature_input.value == second
    ex.sae_select.value = "L4"
    assert ex.feature_input.max == 47 and ex.summary.d_sae == 48
    assert "L4 · feature" in ex.header.value


def test_category_changes_the_ranking_and_the_highlighting(data):
    ex = viz.FeatureExplorer(data)
    ex.category_select.value = "math"
    math_rows = data.saes["L2"].pooled[torch.tensor([2, 3])]
    by_hand = torch.argsort(-math_rows.max(0).values, stable=True)[: ex.top].tolist()
    assert ex.ranked["feature"].tolist() == by_hand
    assert [value for _, value in ex.ranked_select.options] == by_hand
    # Texts outside the chosen category are drawn grey, math ones orange.
    fragment = ex.examples_html.value
    rows = fragment.split('class="saelab-row"')[1:]
    assert any(">math</span>" in r and "rgba(255,140,0" in r for r in rows)
    assert all("rgba(255,140,0" not in r for r in rows if ">math</span>" not in r)
    assert list(ex.figures["categories"].data[0].marker.line.width) == [0, 3, 0, 0, 0, 0]


def test_specialist_ranking_for_a_category(data):
    ex = viz.FeatureExplorer(data, specialist_kwargs={"n_permutations": 200})
    ex.select(category="python", rank_by="specialist")
    assert set(ex.ranked["category"]) == {"python"}
    assert ex.ranked["auroc"].is_monotonic_decreasing
    assert all(label.endswith("(python)") for label, _ in ex.ranked_select.options)


def test_select_rejects_unknown_choices(data):
    ex = viz.FeatureExplorer(data)
    with pytest.raises(ValueError, match="Unknown SAE 'L9'; valid: \\['L2', 'L4'\\]"):
        ex.select(sae="L9")
    with pytest.raises(ValueError, match="Unknown category 'poetry'"):
        ex.select(category="poetry")
    with pytest.raises(ValueError, match="out of range for 'L2' \\(d_sae=32\\)"):
        ex.select(feature=32)
    with pytest.raises(ValueError, match="Unknown ranking"):
        ex.select(rank_by="loudest")


def test_neuronpedia_link_when_the_sae_has_an_id(tiny_model, make_sae):
    from saelab.saes import sae_neuronpedia_url

    sae = make_sae(tiny_model.cfg.d_model, 16, "blocks.2.hook_resid_pre", seed=5)
    sae.cfg.metadata.neuronpedia_id = "smollm2-135m/2-test"
    one_sae = viz.ExplorerData.build(tiny_model, {"L2": sae}, TEXTS, LABELS, use_cache=False)
    ex = viz.FeatureExplorer(one_sae).select(feature=7)
    assert f'href="{sae_neuronpedia_url(sae, 7)}"' in ex.header.value
    assert explorer_view.NO_NEURONPEDIA not in ex.header.value


def test_to_html_is_self_contained(data, tmp_path):
    ex = viz.FeatureExplorer(data).select(feature=int(data.saes["L2"].pooled.sum(0).argmax()))
    page = ex.to_html(tmp_path / "explorer.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined, nothing is fetched
    assert page.count("Plotly.newPlot") == 3
    assert ex.examples.fragment() in page and explorer_view.NO_NEURONPEDIA in page
    with pytest.raises(ValueError, match="figures must be"):
        ex.to_html(tmp_path / "x.html", figures="png")


def test_explanations_show_in_the_summary_the_widget_and_the_page(data, tmp_path):
    ex = viz.FeatureExplorer(data, explanations={"L4": {3: "tokens <like> this"}},
                             explanation_scores={"L4": {3: "simulation 0.41"}})  # fmt: skip
    ex.select(sae="L4", feature=3)
    assert ex.summary.explanation == "tokens <like> this" and ex.summary.explanation_score == "simulation 0.41"
    assert "tokens &lt;like&gt; this" in ex.summary_html.value and "simulation 0.41" in ex.summary_html.value
    assert "tokens &lt;like&gt; this" in ex.to_html(tmp_path / "explorer.html").read_text(encoding="utf-8")
    ex.select(sae="L2", feature=3)  # the same feature number in another SAE has none
    assert ex.summary.explanation is None and "explanation" not in ex.summary_html.value
    with pytest.raises(ValueError, match="keyed by SAE name"):
        viz.FeatureExplorer(data, explanations={"L9": {0: "x"}})


@pytest.mark.slow
def test_to_html_with_inline_svg(data, tmp_path):
    from saelab._util.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium for kaleido")
    page = viz.FeatureExplorer(data).to_html(tmp_path / "explorer.html", figures="svg").read_text(encoding="utf-8")
    assert page.count("<svg") >= 3 and "<script" not in page
