"""The README and docs/: the pictures in the README's first screen are the ones
scripts/readme_figures.py writes, small; every relative link resolves; the Layout names every
package. The script turns a demo run's figures into WebP of at most 900 px and 200 KB, and says
to run `make demo` when a figure is missing."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from saelab._util import browser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKDOWN = [
    README,
    *sorted((ROOT / "docs").glob("*.md")),
    *(ROOT / d / "README.md" for d in ("saelab", "data", "bench")),
]
MAX_BYTES = 200 * 1024


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


figures = load_script()


# -- the README ---------------------------------------------------------------------


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def test_the_readme_opens_with_every_picture_the_script_writes():
    text = readme_text()
    first_section = text.index("\n## ")
    shown = re.findall(r'<img src="docs/img/([\w-]+)\.(\w+)"', text)
    assert sorted(name for name, _ in shown) == sorted(figures.NAMES)
    assert {ext for _, ext in shown} == {figures.FORMAT}
    assert all(text.index(f"docs/img/{name}.") < first_section for name in figures.NAMES), "pictures come first"
    for caption in [p.caption for p in figures.PICTURES] + [figures.DASHBOARD_CAPTION]:
        assert caption in text


def test_committed_pictures_are_small():
    images = sorted((ROOT / "docs" / "img").glob(f"*.{figures.FORMAT}"))
    if not images:
        pytest.skip("no pictures yet: run `make demo`, then scripts/readme_figures.py")
    assert {p.stem for p in images} <= set(figures.NAMES)
    assert all(p.stat().st_size <= MAX_BYTES for p in images), {p.name: p.stat().st_size for p in images}


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _links(text: str) -> list[str]:
    text = _without_code(text)
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'(?:href|src)="([^"]+)"', text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", _without_code(path.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for link in _links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", link):
            continue  # http(s), mailto
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if path.parent == ROOT / "docs" / "img":
            continue  # the pictures are checked above; they exist once the script has run
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(link)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / link).resolve() for link in _links(readme_text()) if link.startswith("docs/")}
    assert set((ROOT / "docs").glob("*.md")) <= {p.with_name(p.name.partition("#")[0]) for p in linked}


def test_the_layout_names_every_package_and_module():
    layout = readme_text().split("## Layout", 1)[1]
    block = re.search(r"```\n(.*?)```", layout, re.S)
    assert block, "the Layout section holds a code block"
    listed = block[1]
    package = ROOT / "saelab"
    for path in sorted(package.iterdir()):
        if (path / "__init__.py").exists():
            assert re.search(rf"\b{path.name}/", listed), f"Layout leaves out saelab/{path.name}/"
        elif path.suffix == ".py" and path.name != "__init__.py":
            assert re.search(rf"\b{path.name}\b", listed), f"Layout leaves out saelab/{path.name}"
    for folder in ("notebooks", "saelab", "data", "assets", "outputs", "docs", "tests", "bench", "scripts"):
        assert re.search(rf"^{folder}/", listed, re.M), f"Layout leaves out {folder}/"


# -- scripts/readme_figures.py ---------------------------------------------------------


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An RGB PNG, written without Pillow (which saelab does not depend on)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb.astype(np.uint8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def webp_size(data: bytes) -> tuple[int, int]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", "not a WebP file"
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    assert kind == b"VP8X", kind
    return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1


def plot_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """White with coloured dots: a scatter plot at export scale."""
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    for x, y in zip(rng.integers(0, width - 8, 3000), rng.integers(0, height - 8, 3000), strict=True):
        image[y : y + 8, x : x + 8] = rng.integers(0, 255, 3)
    return image


def demo_run(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    """A fake demo run: every figure in assets/, the highlighted tokens in outputs/, a site."""
    assets, outputs, site = tmp_path / "assets", tmp_path / "outputs", tmp_path / "site"
    for folder in (assets, outputs, site):
        folder.mkdir()
    for picture in figures.PICTURES:
        if picture.folder == "assets":
            write_png(assets / picture.pattern, plot_like(rng, 1800, 1000))
    # Noise at its own size does not compress: 474 KB at quality 0.7, so it fits only narrower.
    write_png(assets / "02_feature_map.png", rng.integers(0, 255, (900, 900, 3)))
    tokens = "".join(f'<span style="background: rgba(255,127,14,{v:.2f})">tok{i} </span>' for i, v in
                     enumerate(rng.random(400)))  # fmt: skip
    (outputs / "02_specialist_python.html").write_text(f"<html><body><h3>python</h3><p>{tokens}</p></body></html>")
    (site / "feature.html").write_text(
        "<html><body><h1 id=h></h1><script>document.getElementById('h').textContent = "
        "new URLSearchParams(location.search).get('f');</script></body></html>"
    )
    return {"assets": assets, "outputs": outputs, "site": site}


def test_a_missing_figure_says_to_run_make_demo(tmp_path):
    folders = demo_run(tmp_path, np.random.default_rng(0))
    (folders["assets"] / "02_specialist_heatmap.png").unlink()
    with pytest.raises(figures.MissingFigure, match=r"02_specialist_heatmap\.png.*make demo"):
        figures.find_sources(folders)
    with pytest.raises(figures.MissingFigure, match=r"make demo"):
        figures.find_sources({"assets": tmp_path / "nothing", "outputs": tmp_path / "nothing"})
    assert figures.main(["--assets", str(tmp_path / "nothing"), "--out", str(tmp_path / "img")]) == 1
    assert not (tmp_path / "img").exists(), "nothing is written when a figure is missing"


def test_a_missing_site_says_how_to_build_one(tmp_path):
    with pytest.raises(figures.MissingFigure, match="make dashboards"):
        figures.site_url(tmp_path, "feature.html?sae=h&f=0")
    (tmp_path / "feature.html").write_text("<html></html>")
    url = figures.site_url(tmp_path, "feature.html?sae=h&f=0")
    assert url.startswith("file://") and url.endswith("/feature.html?sae=h&f=0")


def test_the_default_page_is_feature_0_of_the_default_hook(tmp_path):
    assert figures.default_page(tmp_path) == "feature.html?sae=blocks.20.hook_resid_pre&f=0"
    marker = {
        "saes": [{"key": "l15", "hook": "blocks.15.hook_resid_pre"}, {"key": "l20", "hook": "blocks.20.hook_resid_pre"}]
    }
    (tmp_path / figures.SITE_MARKER).write_text(json.dumps(marker))
    assert figures.default_page(tmp_path) == "feature.html?sae=l20&f=0"


def test_the_site_marker_is_the_sites():
    write = pytest.importorskip("saelab.dashboards.site.write")
    assert figures.SITE_MARKER == write.MARKER


def test_picks_choose_another_file_and_reject_unknown_pictures(tmp_path):
    folders = demo_run(tmp_path, np.random.default_rng(0))
    (folders["outputs"] / "01_top_examples.html").write_text("<html></html>")
    found = figures.find_sources(folders, {"highlight": "01_top_examples.html"})
    assert found["highlight"].name == "01_top_examples.html"
    with pytest.raises(ValueError, match="no picture"):
        figures.find_sources(folders, {"nonsense": "x.png"})


@pytest.mark.slow
def test_pictures_are_small_webp_from_figures_pages_and_the_site(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    if browser.find_chromium() is None:
        pytest.skip("no Chromium-based browser found: " + browser.INSTALL_HINT)
    folders = demo_run(tmp_path, np.random.default_rng(0))
    url = figures.site_url(folders["site"], "feature.html?sae=blocks.20.hook_resid_pre&f=7")
    written = figures.write_pictures(figures.find_sources(folders), tmp_path / "img", dashboard_url=url)
    assert sorted(path.stem for path, *_ in written) == sorted(figures.NAMES)
    for path, size, width, height, _ in written:
        data = path.read_bytes()
        assert len(data) == size <= MAX_BYTES, path.name
        assert webp_size(data) == (width, height), path.name
        assert width <= 900, path.name
    widths = {path.stem: width for path, _, width, *_ in written}
    assert widths["specialist_heatmap"] == 900, "an export at scale 2 is halved"
    assert widths["feature_map"] < 900, "noise fits only narrower"
