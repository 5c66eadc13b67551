"""The README's pictures: a few figures of a `make demo` run, written small to docs/img/.

    .venv/bin/python scripts/readme_figures.py                 # after `make demo`
    .venv/bin/python scripts/readme_figures.py --site site/    # and a dashboard page (after `make dashboards`)

The notebooks export their figures to assets/ (PNG and SVG, through ``saelab.viz.save_figure``)
and their HTML pages to outputs/ (token highlighting, explorers). This takes the figures that
PICTURES names, screenshots the token-highlighting page and, with ``--site``, one feature page
of a built dashboard site, and writes each as WebP at most ``--width`` pixels wide and
``--max-kb`` kilobytes, printing the sizes. Everything goes through the system Chromium with
Playwright (nothing is downloaded, and pages may load local files only). Chromium also encodes:
Pillow is not a dependency, and its lossy WebP (quality 0.9) of a 4,608-point feature map at
900 px took 64 KB where a PNG took 296 KB. A figure missing from assets/ or outputs/ is an error
that says to run `make demo` first; nothing is written then.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saelab._util.browser import HEADLESS_FLAGS, INSTALL_HINT, find_chromium

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "webp"
SITE_MARKER = "saelab-site.json"  # saelab.dashboards.site.write.MARKER: the SAEs a site holds
DASHBOARD = "dashboard"
# Lossy WebP qualities tried in turn, then ever smaller widths, until a picture fits --max-kb.
QUALITIES = (0.9, 0.8, 0.7)
SHRINK, MIN_WIDTH = 0.8, 320
HTML_VIEWPORT = {"width": 800, "height": 600}
SITE_VIEWPORT = {"width": 1280, "height": 800}
SETTLE_MS = 1000  # time for a page's scripts to draw after it loaded


@dataclass(frozen=True)
class Picture:
    """One README picture: ``name`` in docs/img/, made from the first file matching ``pattern``
    in ``folder`` (``assets`` or ``outputs``); an ``.html`` source is screenshotted."""

    name: str
    folder: str
    pattern: str
    caption: str


PICTURES: tuple[Picture, ...] = (
    Picture("highlight", "outputs", "02_specialist_*.html",
            "Token highlighting: a specialist's top texts inside and outside its category (notebook 02)"),
    Picture("specialist_heatmap", "assets", "02_specialist_heatmap.png",
            "Each category's best specialist feature on every labelled text (notebook 02)"),
    Picture("feature_map", "assets", "02_feature_map.png",
            "A map of the SAE's 4,608 decoder directions, coloured by specialist category (notebook 02)"),
    Picture("lineages", "assets", "03_specialist_lineages.png",
            "Lineages of each category's best feature through the four layers (notebook 03)"),
    Picture("steering", "assets", "05_steering_summary.png",
            "Steering every category on held-out prompts: concept gain with its 95% CI (notebook 05)"),
)  # fmt: skip
DASHBOARD_CAPTION = "A feature's page in the static dashboard site (make dashboards)"
NAMES: tuple[str, ...] = (*(p.name for p in PICTURES), DASHBOARD)


class MissingFigure(FileNotFoundError):
    """A source the pictures are made from is not there (no demo run, or no site built)."""


def image_path(out: Path, name: str) -> Path:
    return out / f"{name}.{FORMAT}"


def default_page(site: Path) -> str:
    """Feature 0's page of the offline profile's default hook. A site names each SAE by a key
    (``feature.html?sae=<key>&f=<id>``), which its marker file maps to the hook."""
    import saelab.profiles

    hook = saelab.profiles.get("offline").default_hook
    key = re.sub(r"[^A-Za-z0-9._-]", "_", hook.replace("/", "_"))
    marker = site / SITE_MARKER
    if marker.is_file():
        saes = json.loads(marker.read_text(encoding="utf-8")).get("saes", [])
        key = next((entry["key"] for entry in saes if entry.get("hook") == hook), key)
    return f"feature.html?sae={key}&f=0"


def find_sources(folders: Mapping[str, Path], picks: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Each picture's source file; ``picks`` (name -> file name) overrides a picture's pattern.
    Raises MissingFigure naming every missing one."""
    picks = dict(picks or {})
    unknown = sorted(set(picks) - {p.name for p in PICTURES})
    if unknown:
        raise ValueError(f"--pick names no picture: {unknown}; pictures: {[p.name for p in PICTURES]}")
    found, missing = {}, []
    for picture in PICTURES:
        folder = folders[picture.folder]
        pattern = picks.get(picture.name, picture.pattern)
        matches = sorted(folder.glob(pattern))
        if matches:
            found[picture.name] = matches[0]
        else:
            missing.append(f"{folder / pattern} ({picture.name})")
    if missing:
        raise MissingFigure(
            "missing: " + ", ".join(missing) + ". Run `make demo` first: the notebooks write their figures "
            "to assets/ and their HTML pages to outputs/ (or pass --assets / --outputs)."
        )
    return found


def site_url(site: Path, page: str) -> str:
    """The file:// address of ``page`` (a path with an optional ?query) in a built site."""
    path, _, query = page.partition("?")
    file = site / path
    if not file.is_file():
        raise MissingFigure(
            f"no dashboard page at {file}. Build the site first: `make dashboards`, or "
            "`python -m saelab.dashboards --profile offline --out site/`; then pass --site site/."
        )
    return file.resolve().as_uri() + (f"?{query}" if query else "")


# -- the browser ----------------------------------------------------------------------

# Draws a PNG into a canvas `width` pixels wide (white behind transparency) and encodes it.
_ENCODE_JS = """async ([src, width, type, quality]) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const w = Math.min(width, img.naturalWidth);
  const h = Math.max(1, Math.round(img.naturalHeight * w / img.naturalWidth));
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, w, h);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(img, 0, 0, w, h);
  return [canvas.toDataURL(type, quality), w, h];
}"""


# Where the page's content ends: a short page leaves no empty viewport below it.
_CONTENT_BOTTOM_JS = """() => {
  const bottoms = [...document.body.children].map((e) => e.getBoundingClientRect().bottom + window.scrollY);
  return Math.ceil(Math.max(1, ...bottoms)) + 16;
}"""


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser context on the system's headless Chromium that loads local files only."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(INSTALL_HINT)
    flags = [f for f in HEADLESS_FLAGS if f != "--headless"]  # Playwright adds its own
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=[*flags, "--no-proxy-server"])
        try:
            context = browser.new_context(device_scale_factor=1)
            context.route("**/*", _local_only)
            yield context
        finally:
            browser.close()


def _local_only(route: Any) -> None:
    if route.request.url.startswith(("file:", "data:", "about:")):
        route.continue_()
    else:
        route.abort()


def screenshot(context: Any, url: str, viewport: Mapping[str, int], *, full_page: bool) -> bytes:
    """A PNG of ``url``: the viewport, or the page down to its content's end (at most twice the
    viewport's height)."""
    page = context.new_page()
    try:
        page.set_viewport_size(dict(viewport))
        page.goto(url, wait_until="networkidle")
        page.wait_for_timeout(SETTLE_MS)
        if not page.evaluate("document.body && document.body.innerText.trim().length > 0"):
            raise RuntimeError(f"{url} shows no text: is it the right page of a finished site or demo run?")
        if not full_page:
            return page.screenshot()
        height = page.evaluate(_CONTENT_BOTTOM_JS)
        clip = {"x": 0, "y": 0, "width": viewport["width"], "height": min(height, 2 * viewport["height"])}
        return page.screenshot(full_page=True, clip=clip)
    finally:
        page.close()


def encode(context: Any, png: bytes, width: int, max_bytes: int) -> tuple[bytes, int, int]:
    """``png`` as WebP at most ``width`` pixels wide and ``max_bytes`` long: (data, width, height).
    Lowers the quality, then the width, until it fits."""
    page = context.new_page()
    try:
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        while True:
            for quality in QUALITIES:
                url, w, h = page.evaluate(_ENCODE_JS, [src, width, f"image/{FORMAT}", quality])
                header, _, payload = url.partition(",")
                if header != f"data:image/{FORMAT};base64":
                    raise RuntimeError(f"this Chromium cannot encode {FORMAT} ({header})")
                data = base64.b64decode(payload)
                if len(data) <= max_bytes:
                    return data, w, h
            if width <= MIN_WIDTH:
                raise RuntimeError(f"cannot fit a picture in {max_bytes // 1024} KB, even {width} px wide")
            width = max(MIN_WIDTH, int(width * SHRINK))
    finally:
        page.close()


# -- the pictures ---------------------------------------------------------------------


def source_png(context: Any, source: Path) -> bytes:
    if source.suffix == ".html":
        return screenshot(context, source.resolve().as_uri(), HTML_VIEWPORT, full_page=True)
    return source.read_bytes()


def write_pictures(
    sources: Mapping[str, Path],
    out: Path,
    *,
    dashboard_url: str | None = None,
    width: int = 900,
    max_kb: int = 200,
) -> list[tuple[Path, int, int, int, str]]:
    """Write every picture to ``out``; returns (path, bytes, width, height, source) for each."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with chromium() as context:
        jobs: list[tuple[str, bytes, str]] = [(n, source_png(context, s), str(s)) for n, s in sources.items()]
        if dashboard_url is not None:
            jobs.append((DASHBOARD, screenshot(context, dashboard_url, SITE_VIEWPORT, full_page=False), dashboard_url))
        for name, png, origin in jobs:
            data, w, h = encode(context, png, width, max_kb * 1024)
            path = image_path(out, name)
            path.write_bytes(data)
            written.append((path, len(data), w, h, origin))
    return written


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=ROOT / "assets", help="figures of a demo run (PNG)")
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs", help="HTML pages of a demo run")
    parser.add_argument("--site", type=Path, help="a built dashboard site (`make dashboards`); else no dashboard")
    parser.add_argument("--page", help="the site's page to show (default: feature 0 of the default hook)")
    parser.add_argument("--pick", action="append", default=[], metavar="NAME=FILE",
                        help="take picture NAME from another file (a glob) of its folder")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the pictures go")
    parser.add_argument("--width", type=int, default=900, help="largest width in pixels")
    parser.add_argument("--max-kb", type=int, default=200, help="largest size of one picture")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    picks = dict(pick.split("=", 1) for pick in args.pick)
    try:
        sources = find_sources({"assets": args.assets, "outputs": args.outputs}, picks)
        url = site_url(args.site, args.page or default_page(args.site)) if args.site else None
    except MissingFigure as error:
        print(f"[readme_figures] {error}", file=sys.stderr)
        return 1
    if url is None:
        print("[readme_figures] no --site given: skipping the dashboard picture "
              "(build a site with `make dashboards`, then pass --site site/)")  # fmt: skip
    try:
        written = write_pictures(sources, args.out, dashboard_url=url, width=args.width, max_kb=args.max_kb)
    except RuntimeError as error:
        print(f"[readme_figures] {error}", file=sys.stderr)
        return 1
    for path, size, w, h, origin in written:
        print(f"[readme_figures] {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{w}x{h}, {size / 1024:.0f} KB (from {origin})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
