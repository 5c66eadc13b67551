"""saelab.viz.feature_map: the scatter of a feature map, on hand-made points shaped like
saelab.evolution.FeatureMap.points with the columns a notebook adds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from saelab import viz
from saelab._util import browser
from saelab.viz import feature_map as fm
from saelab.viz.style import CATEGORY_COLORS


def points(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    categories = ["python", "none", "math", "none"] * (n // 4)
    return pd.DataFrame(
        {
            "feature": np.arange(n) * 10,
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "cluster": np.arange(n) % 3,
            "category": categories,
            "density": np.r_[0.0, np.logspace(-5, -1, n - 1)],
            "top_tokens": [[" def", "\n"], ["<b>"], []] * (n // 3),
            "explanation": ["code <keywords> & friends"] + ["x" * 200] * (n - 1),
        }
    )


def test_colour_by_category_draws_the_background_first_and_keeps_category_colours():
    frame = points()
    fig = viz.feature_map_figure(frame, color="category")
    assert [t.name for t in fig.data] == ["none", "python", "math"]
    none, python, math = fig.data
    assert none.marker.color == fm.BACKGROUND_COLOR
    assert python.marker.color == CATEGORY_COLORS["python"] and math.marker.color == CATEGORY_COLORS["math"]
    assert list(python.customdata) == frame.loc[frame["category"] == "python", "feature"].tolist()
    assert sum(len(t.x) for t in fig.data) == len(frame)
    assert all(isinstance(t, go.Scatter) for t in fig.data)  # few points: SVG markers
    assert fig.layout.xaxis.title.text == "UMAP 1" and fig.layout.xaxis.showticklabels is False


def test_hover_shows_id_tokens_and_explanation_escaped():
    frame = points()
    fig = viz.feature_map_figure(frame, color="category")
    text = dict(zip(fig.data[1].customdata, fig.data[1].text, strict=True))[0]
    assert text.startswith("<b>feature #0</b>")
    assert "top tokens: ␣def, ⏎" in text
    assert "explanation: code &lt;keywords&gt; &amp; friends" in text
    assert "category: python" in text and "density: 0" in text
    other = fig.data[0].text[0]  # feature 10: a token that looks like HTML, a long explanation
    assert "top tokens: &lt;b&gt;" in other
    assert "x" * 89 + "…" in other and "x" * 91 not in other
    only_id = viz.feature_map_figure(frame, color=None, hover=[])
    assert only_id.data[0].text[0] == "<b>feature #0</b>"


def test_colour_by_cluster_names_each_cluster_and_labels_its_median():
    frame = points()
    labels = pd.DataFrame({"cluster": [0, 1, 2], "top_tokens": [["def"], ["http", "://"], ["<"]]})
    fig = viz.feature_map_figure(frame, color="cluster", cluster_labels=labels, method="pca")
    assert [t.name for t in fig.data] == ["0: def", "1: http, ://", "2: &lt;"]
    assert len({t.marker.color for t in fig.data}) == 3
    annotations = {a.text: (a.x, a.y) for a in fig.layout.annotations}
    x, y = frame.loc[frame["cluster"] == 1, ["x", "y"]].median()
    assert annotations["<b>1</b>: http, ://"] == pytest.approx((x, y))
    assert fig.layout.xaxis.title.text == "PCA 1" and fig.layout.xaxis.showticklabels is not False


def test_colour_by_density_uses_a_log_scale_and_draws_zeros_grey():
    frame = points()
    fig = viz.feature_map_figure(frame, color="density")
    zeros, scale = fig.data
    assert zeros.name == "density = 0" and list(zeros.customdata) == [0]
    np.testing.assert_allclose(scale.marker.color, np.log10(frame["density"].to_numpy()[1:]))
    assert scale.marker.colorbar.ticktext[0] == "10<sup>-5</sup>" and scale.showlegend is False
    linear = viz.feature_map_figure(frame.assign(score=np.linspace(-1, 1, len(frame))), color="score")
    (trace,) = linear.data
    np.testing.assert_allclose(trace.marker.color, np.linspace(-1, 1, len(frame)))
    with pytest.raises(ValueError, match="log_color needs"):
        viz.feature_map_figure(frame.assign(score=np.linspace(-1, 1, len(frame))), color="score", log_color=True)


def test_many_points_switch_to_webgl(monkeypatch):
    monkeypatch.setattr(fm, "WEBGL_ABOVE", 5)
    fig = viz.feature_map_figure(points(), color="category")
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert isinstance(viz.feature_map_figure(points(), color="category", webgl=False).data[0], go.Scatter)


def test_standalone_html_carries_plotly_and_the_hover(tmp_path):
    fig = viz.feature_map_figure(points(), color="category")
    page = tmp_path / "map.html"
    fig.write_html(page, include_plotlyjs=True)
    html = page.read_text(encoding="utf-8")
    assert "<script src=" not in html  # plotly.js is inlined: the page works offline
    assert "plotly.js v" in html and "feature #10" in html


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda f: f.drop(columns="x"), {}, "lacks columns"),
        (lambda f: f.assign(x=np.nan), {}, "NaN"),
        (lambda f: f.assign(feature=0), {}, "duplicate feature ids"),
        (lambda f: f, {"color": "nope"}, "color column 'nope'"),
        (lambda f: f, {"hover": ["nope"]}, "hover columns"),
        (lambda f: f, {"color": "top_tokens"}, "holds lists"),
        (lambda f: f.assign(name=[str(i) for i in range(len(f))]), {"color": "name"}, None),
        (lambda f: f.drop(columns="cluster"), {"cluster_labels": {0: "a"}}, "needs a 'cluster' column"),
        (lambda f: f.assign(density=np.nan), {"color": "density"}, "missing values"),
        (lambda f: f.iloc[:0], {}, "empty"),
    ],
)
def test_bad_points_are_refused_clearly(change, kwargs, message):
    frame = change(points())
    if message is None:  # every value its own category: fine below the limit, refused above it
        viz.feature_map_figure(frame, **kwargs)
        many = pd.concat([points()] * 6, ignore_index=True).assign(feature=lambda f: np.arange(len(f)))
        with pytest.raises(ValueError, match="too many to colour"):
            viz.feature_map_figure(many.assign(name=[str(i) for i in range(len(many))]), color="name")
        return
    with pytest.raises(ValueError, match=message):
        viz.feature_map_figure(frame, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("webgl", [False, True])
def test_map_exports_to_png_and_svg(tmp_path, webgl):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium installed; " + browser.INSTALL_HINT)
    fig = viz.feature_map_figure(points(), color="category", webgl=webgl)
    png, svg = viz.save_figure(fig, tmp_path / "map")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert svg.read_text().lstrip().startswith("<svg")
