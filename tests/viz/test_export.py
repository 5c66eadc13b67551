"""saelab.viz.export: save_figure asks kaleido for an offline render with the system Chromium,
or says how to install one. The real-export test drives that Chromium and is marked slow."""

from __future__ import annotations

import re
import struct

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from saelab import viz
from saelab._util import browser
from saelab.data import CATEGORIES
from saelab.viz import export


def _bar() -> go.Figure:
    return viz.category_bar(
        pd.DataFrame(
            {"category": list(CATEGORIES), "mean": np.linspace(0.1, 2, 7), "frac_active": np.linspace(0, 1, 7)}
        )
    )


def test_save_figure_without_chromium_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(RuntimeError) as err:
        viz.save_figure(_bar(), tmp_path / "fig")
    assert browser.INSTALL_HINT in str(err.value)
    assert not list(tmp_path.iterdir())


def test_save_figure_asks_kaleido_for_an_offline_render(monkeypatch, tmp_path):
    import kaleido

    started, calls = [], []

    def fake_write(specs, *, cancel_on_error):
        calls.append(specs)
        for spec in specs:
            spec["path"].write_bytes(b"x")

    monkeypatch.setattr(export, "find_chromium", lambda: "/opt/chrome")
    monkeypatch.setattr(export, "_kaleido_browser", None)
    monkeypatch.setattr(kaleido, "start_sync_server", lambda **kw: started.append(kw))
    monkeypatch.setattr(kaleido, "stop_sync_server", lambda **kw: None)
    monkeypatch.setattr(kaleido._global_server, "is_running", lambda: bool(started))
    monkeypatch.setattr(kaleido, "write_fig_from_object_sync", fake_write)
    out = viz.save_figure(_bar(), tmp_path / "sub" / "fig.png", formats=("png", "svg"), scale=3)
    viz.save_figure(_bar(), tmp_path / "again.png", formats=("png",))
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
        viz.save_figure(_bar(), tmp_path / "f", **kwargs)


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
    heat = viz.specialist_heatmap(
        pd.DataFrame(np.arange(14.0).reshape(7, 2), index=list(CATEGORIES), columns=["L5", "L10"])
    )
    png_bar, svg_bar = viz.save_figure(_bar(), tmp_path / "category_bar", scale=2, width=800, height=450)
    (png_heat,) = viz.save_figure(heat, tmp_path / "specialists.png", formats=("png",), scale=1)
    assert _png_size(png_bar.read_bytes()) == (1600, 900)
    assert png_bar.stat().st_size > 10_000
    assert _png_size(png_heat.read_bytes()) == (900, heat.layout.height)
    svg = svg_bar.read_text()
    assert svg.lstrip().startswith("<svg") and "Mean activation by category" in svg
