"""saelab.plots: figure builders on hand-made frames shaped like saelab.analysis output, and export.

Assertions read fig.data / fig.layout; nothing is displayed. The real-export tests drive the
system Chromium through kaleido and are marked slow.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from saelab import browser, plots
from saelab.data import CATEGORIES

SAES = ["L5", "L10", "L15", "L20"]


# ---------------------------------------------------------------------------------------
# Colours and labels.


def test_every_dataset_category_has_its_own_colour():
    assert set(plots.CATEGORY_COLORS) == set(CATEGORIES)
    assert len(set(plots.CATEGORY_COLORS.values())) == len(CATEGORIES)
    assert plots.category_color("math") == plots.CATEGORY_COLORS["math"]
    # An unknown category gets a colour, the same one every time.
    assert plots.category_color("legal") == plots.category_color("legal")


def test_sae_colours_follow_the_given_order():
    colors = plots.sae_colors(SAES)
    assert list(colors) == SAES
    assert len(set(colors.values())) == 4
    assert plots.sae_colors([]) == {}


@pytest.mark.parametrize(
    ("token", "shown"),
    [("\n", "⏎"), (" the", " the"), ("\t", "⇥"), (" ", "␣"), ("  ", "␣␣"), ("", "∅"), ("x\ny", "x⏎y")],
)
def test_visible_token(token, shown):
    assert plots.visible_token(token) == shown


def test_visible_token_can_mark_every_space():
    assert plots.visible_token(" the cat", mark_spaces=True) == "␣the␣cat"


# ---------------------------------------------------------------------------------------
# Feature heatmap.


def test_feature_heatmap_keeps_values_rows_and_category_strip():
    matrix = torch.tensor([[0.0, 1.5], [2.0, 0.0], [0.5, 0.25]])
    labels = ["def f(): pass", "same label", "same label"]  # duplicate labels must stay two rows
    fig = plots.feature_heatmap(matrix, labels, [7, 42], categories=["python", "math", "python"])
    strip, heat = fig.data
    np.testing.assert_allclose(np.asarray(heat.z), matrix.numpy())
    assert list(heat.x) == ["#7", "#42"]
    assert list(heat.y) == [0, 1, 2]
    assert "%{customdata}" in heat.hovertemplate and "%{z" in heat.hovertemplate
    assert list(fig.layout.yaxis.ticktext) == labels
    # The strip's value for each row falls inside that row's category colour band.
    scale = [(float(stop), color) for stop, color in strip.colorscale]
    k = strip.zmax
    for row, category in enumerate(["python", "math", "python"]):
        v = strip.z[row][0] / k
        band = [c for (lo, c), (hi, _) in zip(scale[::2], scale[1::2], strict=True) if lo <= v <= hi]
        assert band == [plots.CATEGORY_COLORS[category]]


def test_feature_heatmap_without_categories_and_numpy_input():
    fig = plots.feature_heatmap(np.eye(3), ["a", "b", "c"], [1, 2, 3], title="T")
    assert len(fig.data) == 1
    assert fig.layout.title.text == "T"
    assert fig.layout.xaxis.title.text == "feature"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(matrix=np.ones((2, 2)), text_labels=["a"], feature_ids=[1, 2]), "text_labels has 1"),
        (dict(matrix=np.ones((2, 2)), text_labels=["a", "b"], feature_ids=[1]), "feature_ids has 1"),
        (dict(matrix=np.ones(2), text_labels=["a", "b"], feature_ids=[1]), "2-D"),
        (dict(matrix=[[np.nan, 1.0]], text_labels=["a"], feature_ids=[1, 2]), "NaN"),
        (dict(matrix=np.ones((1, 2)), text_labels=["a"], feature_ids=[1, 2], categories=[]), "categories has 0"),
    ],
)
def test_feature_heatmap_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.feature_heatmap(**kwargs)


# ---------------------------------------------------------------------------------------
# Rankings.


def _strongest_long() -> pd.DataFrame:
    """Shaped like LayerComparison.strongest: sae, rank, feature, max_activation (top 2 per SAE)."""
    return pd.DataFrame(
        {
            "sae": ["L5", "L5", "L10", "L10"],
            "rank": [1, 2, 1, 2],
            "feature": [11, 12, 21, 22],
            "max_activation": [9.0, 4.0, 30.0, 20.0],
        }
    )


def test_top_features_bar_by_sae_groups_one_trace_per_rank():
    fig = plots.top_features_bar(_strongest_long(), value="max_activation", by="sae")
    assert [t.name for t in fig.data] == ["rank 1", "rank 2"]
    rank1, rank2 = fig.data
    assert list(rank1.x) == ["L5", "L10"] and list(rank1.y) == [9.0, 30.0]
    assert list(rank1.text) == ["#11", "#21"]
    assert list(rank2.customdata) == [12, 22]
    assert fig.layout.barmode == "group"
    assert fig.layout.yaxis.title.text == "max activation"
    assert "feature #%{customdata}" in rank1.hovertemplate


def test_top_features_bar_single_ranking_in_rank_order_with_percent_axis():
    frequent = pd.DataFrame(  # shaped like analysis.frequent
        {
            "rank": [2, 1, 3],
            "feature": [5, 9, 1],
            "frequency": [0.5, 0.9, 0.1],
            "n_active": [5, 9, 1],
            "mean_when_active": [1.0, 2.0, 3.0],
        }
    )
    fig = plots.top_features_bar(frequent, value="frequency", by=None)
    (bar,) = fig.data
    assert list(bar.x) == ["#9", "#5", "#1"]
    assert list(bar.y) == [0.9, 0.5, 0.1]
    assert fig.layout.yaxis.tickformat == ".0%"
    assert fig.layout.yaxis.title.text == "share of texts where active"


def test_top_features_bar_rejects_missing_columns_and_duplicates():
    with pytest.raises(ValueError, match="lacks columns \\['score'\\]"):
        plots.top_features_bar(_strongest_long(), value="score")
    doubled = pd.concat([_strongest_long(), _strongest_long()])
    with pytest.raises(ValueError, match="same \\(sae, rank\\)"):
        plots.top_features_bar(doubled)


def test_coverage_by_layer_shows_rank_one_coverage_per_sae():
    frequent_long = pd.DataFrame(  # shaped like LayerComparison.frequent
        {
            "sae": ["L5", "L5", "L10", "L10", "L15"],
            "rank": [1, 2, 1, 2, 1],
            "feature": [3, 4, 8, 9, 100],
            "frequency": [0.51, 0.4, 0.46, 0.2, 0.3],
        }
    )
    fig = plots.coverage_by_layer(frequent_long)
    (bar,) = fig.data
    assert list(bar.x) == ["L5", "L10", "L15"]
    assert list(bar.y) == [0.51, 0.46, 0.3]
    assert list(bar.customdata) == [3, 8, 100]
    assert bar.text[0] == "#3<br>51%"
    assert fig.layout.yaxis.tickformat == ".0%"


def test_specialist_heatmap_puts_categories_on_rows_and_saes_on_columns():
    scores = pd.DataFrame(  # shaped like LayerComparison.scores (category × sae)
        [[1, 6], [8, 7], [0, 2]], index=["python", "math", "conversational"], columns=["L5", "L10"]
    )
    (heat,) = plots.specialist_heatmap(scores).data
    np.testing.assert_array_equal(np.asarray(heat.z), scores.to_numpy())
    assert list(heat.x) == ["L5", "L10"]
    assert list(heat.y) == ["python", "math", "conversational"]
    assert heat.texttemplate == "%{z:.4~g}"
    with pytest.raises(ValueError, match="NaN"):
        plots.specialist_heatmap(scores.astype(float).where(scores > 0))


def test_specialist_count_by_layer_has_dashed_target_line():
    counts = pd.Series([5, 6, 7, 7], index=SAES, name="n_specialist_categories")
    fig = plots.specialist_count_by_layer(counts, n_categories=7)
    line, target = fig.data
    assert list(line.x) == SAES and list(line.y) == [5, 6, 7, 7]
    assert list(line.text) == ["5/7", "6/7", "7/7", "7/7"]
    assert list(target.y) == [7, 7, 7, 7]
    assert target.line.dash == "dash" and target.name == "all categories (7)"
    with pytest.raises(ValueError, match="n_categories=7"):
        plots.specialist_count_by_layer(pd.Series([8], index=["L5"]), 7)
    with pytest.raises(ValueError, match="positive integer"):
        plots.specialist_count_by_layer(counts, 0)


# ---------------------------------------------------------------------------------------
# Single-feature panels.


def test_density_histogram_from_counts_and_edges():
    fig = plots.density_histogram((np.array([3, 0, 1]), np.array([0.0, 1.0, 2.0, 4.0])))
    (bar,) = fig.data
    np.testing.assert_allclose(bar.x, [0.5, 1.5, 3.0])
    np.testing.assert_allclose(bar.width, [1.0, 1.0, 2.0])
    assert list(bar.y) == [3, 0, 1]
    assert fig.layout.xaxis.title.text == "activation"
    assert not fig.layout.annotations


def test_density_histogram_from_evals_notes_dead_features():
    from saelab.evals import density_histogram as evals_hist

    density = torch.tensor([0.0, 0.0, 1e-3, 1e-2, 0.5])
    hist = evals_hist(density, bins=3)
    fig = plots.density_histogram(hist)
    (bar,) = fig.data
    assert sum(bar.y) == 3  # live features only
    assert "log10" in fig.layout.xaxis.title.text
    assert fig.layout.annotations[0].text.startswith("2 dead feature(s)")


def test_density_histogram_rejects_mismatched_edges():
    with pytest.raises(ValueError, match="len\\(edges\\) == len\\(counts\\) \\+ 1"):
        plots.density_histogram(([1, 2], [0.0, 1.0]))
    with pytest.raises(ValueError, match="DensityHistogram or a \\(counts, edges\\)"):
        plots.density_histogram(5)


def test_density_histograms_overlay_one_line_per_sae():
    from saelab.evals import density_histogram as evals_hist

    edges = torch.linspace(-4, 0, 5)
    hists = {
        "relu": evals_hist(torch.tensor([0.0, 1e-3, 1e-2, 0.5]), bins=edges),
        "topk": evals_hist(torch.tensor([1e-3, 1e-3, 2e-2, 0.1]), bins=edges),
    }
    fig = plots.density_histograms(hists)
    assert [t.name for t in fig.data] == ["relu (1 dead)", "topk (0 dead)"]
    assert sum(fig.data[0].y) == 3 and sum(fig.data[1].y) == 4
    np.testing.assert_allclose(fig.data[0].x, [-3.5, -2.5, -1.5, -0.5])
    other = {"x": evals_hist(torch.tensor([0.1]), bins=torch.linspace(-3, 0, 4))}
    with pytest.raises(ValueError, match="same bin edges"):
        plots.density_histograms({**hists, **other})
    with pytest.raises(ValueError, match="empty"):
        plots.density_histograms({})


def test_grouped_bar_one_trace_per_group_in_order():
    frame = pd.DataFrame(
        {"category": ["math", "urls", "math", "urls"], "auroc": [0.9, 0.8, 0.6, 0.55], "pooling": ["masked", "masked", "naive", "naive"]}
    )
    fig = plots.grouped_bar(frame, "category", "auroc", "pooling", title="Best AUROC")
    assert [t.name for t in fig.data] == ["masked", "naive"]
    assert list(fig.data[1].y) == [0.6, 0.55] and list(fig.data[0].x) == ["math", "urls"]
    assert fig.layout.barmode == "group"
    with pytest.raises(ValueError, match="lacks columns \\['q_value'\\]"):
        plots.grouped_bar(frame, "category", "q_value", title="x")


def test_coactivation_heatmap_is_square_with_feature_labels():
    matrix = pd.DataFrame([[1.0, 0.25], [0.25, 1.0]], index=[7, 3], columns=[7, 3])
    fig = plots.coactivation_heatmap(matrix)
    (heat,) = fig.data
    assert list(heat.x) == ["#7", "#3"] and list(heat.y) == ["#7", "#3"]
    np.testing.assert_allclose(heat.z, matrix.to_numpy())
    with pytest.raises(ValueError, match="square"):
        plots.coactivation_heatmap(matrix.iloc[:1])


def _logit_lens() -> pd.DataFrame:
    """Shaped like FeatureSummary.logit_lens."""
    return pd.DataFrame(
        {
            "direction": ["promoted", "promoted", "suppressed", "suppressed"],
            "rank": [2, 1, 1, 2],
            "token": [" the", "\n", "ing", " of"],
            "token_id": [1, 2, 3, 4],
            "logit": [1.5, 2.5, -3.0, -1.0],
        }
    )


def test_logit_lens_bar_two_panels_in_rank_order_with_visible_tokens():
    fig = plots.logit_lens_bar(_logit_lens())
    promoted, suppressed = fig.data
    assert list(promoted.x) == [2.5, 1.5] and list(suppressed.x) == [-3.0, -1.0]
    assert list(fig.layout.yaxis.ticktext) == ["⏎", "␣the"]
    assert list(fig.layout.yaxis2.ticktext) == ["ing", "␣of"]
    assert promoted.orientation == "h"
    assert "id %{customdata[1]}" in promoted.hovertemplate
    bad = _logit_lens().assign(direction="up")
    with pytest.raises(ValueError, match="unknown directions \\['up'\\]"):
        plots.logit_lens_bar(bad)


def test_logit_lens_bar_shortens_long_tokens_on_the_axis_but_not_in_the_hover():
    frame = _logit_lens()
    frame.loc[0, "token"] = " " + "=" * 64  # a real SmolLM2 vocabulary entry
    fig = plots.logit_lens_bar(frame)
    label = fig.layout.yaxis.ticktext[1]
    assert len(label) == plots.AXIS_TOKEN_CHARS and label.startswith("␣===") and label.endswith("…")
    assert fig.data[0].customdata[1][0] == "␣" + "=" * 64


def test_category_bar_uses_the_shared_palette_and_highlights():
    means = pd.DataFrame(  # shaped like FeatureSummary.category_means
        {"category": ["python", "math", "social"], "mean": [0.1, 2.0, 0.0], "frac_active": [0.2, 0.9, 0.0]}
    )
    fig = plots.category_bar(means, highlight="math")
    (bar,) = fig.data
    assert list(bar.marker.color) == [plots.CATEGORY_COLORS[c] for c in ["python", "math", "social"]]
    assert list(bar.marker.line.width) == [0, 3, 0]
    assert list(bar.customdata) == [0.2, 0.9, 0.0]
    with pytest.raises(ValueError, match="highlight='urls'"):
        plots.category_bar(means, highlight="urls")


# ---------------------------------------------------------------------------------------
# Phase 1 and training.


def test_dense_vs_sparse_figure_shows_only_features_that_fire():
    from saelab.extract import DenseVsSparse

    feats = torch.zeros(3, 10)
    feats[0, 4], feats[2, 7], feats[1, 4] = 2.0, 5.0, 1.0
    d = DenseVsSparse(
        tokens=["Hello", " world", "\n"],
        resid=torch.randn(3, 6, generator=torch.Generator().manual_seed(0)),
        features=feats,
        resid_nonzero_frac=1.0,
        feature_active_frac=3 / 30,
        l0_per_token=(feats > 0).sum(dim=1),
        n_features_active_anywhere=2,
    )
    fig = plots.dense_vs_sparse_figure(d)
    resid, features, l0 = fig.data
    assert np.asarray(resid.z).shape == (3, 6)
    assert list(features.x) == ["#7", "#4"]  # by peak activation; silent features left out
    assert list(l0.y) == [1, 1, 1]
    assert list(fig.layout.yaxis.ticktext) == ["Hello", "␣world", "⏎"]
    assert "2 of 10 features" in fig.layout.title.text


def test_pareto_front_known_answer():
    l0 = np.array([10.0, 20.0, 15.0, 30.0, 20.0])
    ev = np.array([0.6, 0.8, 0.5, 0.79, 0.9])
    # 2 (l0 15, ev .5) is beaten by 0; 1 and 3 are beaten by 4 (l0 20, ev .9).
    assert plots.pareto_front(l0, ev).tolist() == [0, 4]


def test_pareto_figure_one_trace_per_sae_plus_frontier():
    frame = pd.DataFrame(
        {"sae": ["relu", "relu", "topk"], "l0": [10.0, 40.0, 20.0], "explained_variance": [0.6, 0.7, 0.9]}
    )
    fig = plots.pareto(frame)
    assert [t.name for t in fig.data] == ["relu", "topk", "Pareto frontier"]
    assert list(fig.data[-1].x) == [10.0, 20.0]
    assert fig.layout.xaxis.title.text == "L0 (active features per token)"


def test_training_curves_from_history_rows():
    history = [
        {"step": s, "loss": 10.0 / s, "l0": 100.0 / s, "explained_variance": 1 - 1 / s, "lr": 1e-3} for s in range(1, 6)
    ]
    fig = plots.training_curves(history)
    assert [t.y[-1] for t in fig.data] == pytest.approx([2.0, 20.0, 0.8])
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis3.tickformat == ".0%"
    two_runs = pd.DataFrame(history * 2).assign(run=["a"] * 5 + ["b"] * 5)
    fig = plots.training_curves(two_runs, metrics=("l0",), by="run")
    assert [t.name for t in fig.data] == ["a", "b"]
    with pytest.raises(ValueError, match="lacks columns \\['l0'\\]"):
        plots.training_curves([{"step": 1, "loss": 1.0, "explained_variance": 0.5}])


# ---------------------------------------------------------------------------------------
# Export.


def _bar() -> go.Figure:
    return plots.category_bar(
        pd.DataFrame(
            {"category": list(CATEGORIES), "mean": np.linspace(0.1, 2, 7), "frac_active": np.linspace(0, 1, 7)}
        )
    )


def test_save_figure_without_chromium_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(plots, "find_chromium", lambda: None)
    with pytest.raises(RuntimeError) as err:
        plots.save_figure(_bar(), tmp_path / "fig")
    assert browser.INSTALL_HINT in str(err.value)
    assert not list(tmp_path.iterdir())


def test_save_figure_asks_kaleido_for_an_offline_render(monkeypatch, tmp_path):
    import kaleido

    started, calls = [], []

    def fake_write(specs, *, cancel_on_error):
        calls.append(specs)
        for spec in specs:
            spec["path"].write_bytes(b"x")

    monkeypatch.setattr(plots, "find_chromium", lambda: "/opt/chrome")
    monkeypatch.setattr(plots, "_kaleido_browser", None)
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **kw: started.append(kw))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **kw: None)
    monkeypatch.setattr(kaleido._global_server, "is_running", lambda: bool(started))
    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", fake_write)
    out = plots.save_figure(_bar(), tmp_path / "sub" / "fig.png", formats=("png", "svg"), scale=3)
    plots.save_figure(_bar(), tmp_path / "again.png", formats=("png",))
    assert out == [tmp_path / "sub" / "fig.png", tmp_path / "sub" / "fig.svg"]
    # One browser for both exports, the system one, with MathJax (a CDN fetch) off.
    assert started == [{"path": "/opt/chrome", "mathjax": False, "silence_warnings": True}]
    assert [s["opts"]["format"] for s in calls[0]] == ["png", "svg"]
    assert all(s["opts"]["scale"] == 3 for s in calls[0])
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(formats=()), "formats is empty"), (dict(formats=("eps",)), "Unknown export"), (dict(scale=0), "scale")],
)
def test_save_figure_rejects_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.save_figure(_bar(), tmp_path / "f", **kwargs)


def test_kaleido_page_loads_nothing_from_the_network():
    """With mathjax=False, kaleido's page uses only local files (plotly.js from the plotly package)."""
    import kaleido

    page = kaleido.PageGenerator(mathjax=False).generate_index()
    sources = re.findall(r'<script src="([^"]+)"', page)
    assert sources and all(s.startswith("file://") for s in sources), sources


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_save_figure_writes_real_png_and_svg(tmp_path):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium installed; " + browser.INSTALL_HINT)
    heat = plots.specialist_heatmap(
        pd.DataFrame(np.arange(14.0).reshape(7, 2), index=list(CATEGORIES), columns=["L5", "L10"])
    )
    png_bar, svg_bar = plots.save_figure(_bar(), tmp_path / "category_bar", scale=2, width=800, height=450)
    (png_heat,) = plots.save_figure(heat, tmp_path / "specialists.png", formats=("png",), scale=1)
    assert _png_size(png_bar.read_bytes()) == (1600, 900)
    assert png_bar.stat().st_size > 10_000
    assert _png_size(png_heat.read_bytes()) == (900, heat.layout.height)
    svg = svg_bar.read_text()
    assert svg.lstrip().startswith("<svg") and "Mean activation by category" in svg
