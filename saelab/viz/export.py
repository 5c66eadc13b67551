"""Static export of figures (PNG, SVG, PDF, ...) through kaleido and the system Chromium.

Fully offline: the browser is the system one (never downloaded), plotly.js is the copy
inside the plotly package, and MathJax (which kaleido would otherwise load from a CDN) is
switched off.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import plotly.graph_objects as go

from saelab._util.browser import INSTALL_HINT, find_chromium

log = logging.getLogger(__name__)

ExportFormat = Literal["png", "svg", "pdf", "jpg", "jpeg", "webp"]
_EXPORT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp")


def save_figure(
    fig: go.Figure,
    path: str | Path,
    formats: Sequence[ExportFormat] = ("png", "svg"),
    scale: float = 2,
    *,
    width: int | None = None,
    height: int | None = None,
) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (``assets/x`` -> ``assets/x.png``, ...).

    One headless Chromium session renders all formats. Fully offline: the browser is the system
    one (never downloaded), plotly.js is the copy inside the plotly package, and MathJax (which
    kaleido would otherwise load from a CDN) is switched off. Raises RuntimeError with install
    instructions when no Chromium is found.
    """
    if not formats:
        raise ValueError(f"formats is empty; pick from {list(_EXPORT_FORMATS)}")
    bad = [f for f in formats if f not in _EXPORT_FORMATS]
    if bad:
        raise ValueError(f"Unknown export formats {bad}; valid: {list(_EXPORT_FORMATS)}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    base = Path(path)
    if base.suffix.lstrip(".").lower() in _EXPORT_FORMATS:
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    opts = {
        "scale": scale,
        "width": width or fig.layout["width"] or 900,
        "height": height or fig.layout["height"] or 500,
    }
    outputs = [base.with_name(f"{base.name}.{fmt}") for fmt in formats]
    _render(
        [{"fig": fig, "path": out, "opts": {**opts, "format": fmt}} for out, fmt in zip(outputs, formats, strict=True)]
    )
    log.info("saved figure to %s", ", ".join(map(str, outputs)))
    return outputs


def figures_to_svg(figs: Sequence[go.Figure], *, width: int | None = None, height: int | None = None) -> list[str]:
    """SVG markup of each figure (for static HTML pages), rendered in one Chromium session."""
    if not figs:
        return []
    with tempfile.TemporaryDirectory(prefix="saelab-svg-") as tmp:
        paths = [Path(tmp) / f"fig{i}.svg" for i in range(len(figs))]
        _render(
            [
                {
                    "fig": fig,
                    "path": p,
                    "opts": {
                        "format": "svg",
                        "width": width or fig.layout["width"] or 900,
                        "height": height or fig.layout["height"] or 500,
                    },
                }
                for fig, p in zip(figs, paths, strict=True)
            ]
        )
        return [p.read_text(encoding="utf-8") for p in paths]


def _render(specs: list[dict[str, Any]]) -> None:
    browser = find_chromium()
    if browser is None:
        raise RuntimeError(INSTALL_HINT)
    import kaleido

    _ensure_kaleido_server(kaleido, browser)
    kaleido.write_fig_from_object_sync(specs, cancel_on_error=True)
    missing = [str(s["path"]) for s in specs if not Path(s["path"]).is_file()]
    if missing:
        raise RuntimeError(f"kaleido reported success but did not write {missing}")


_kaleido_browser: str | None = None


def _ensure_kaleido_server(kaleido: Any, browser: str) -> None:
    """Keep one headless Chromium for the whole process: starting one takes seconds, and a
    notebook exports a dozen figures. kaleido stops it at interpreter exit.

    mathjax=False: kaleido's default page loads MathJax from cdnjs, which hangs offline.
    """
    global _kaleido_browser
    if _kaleido_browser == browser and kaleido._global_server.is_running():
        return
    kaleido.stop_sync_server(silence_warnings=True)
    kaleido.start_sync_server(path=browser, mathjax=False, silence_warnings=True)
    _kaleido_browser = browser
