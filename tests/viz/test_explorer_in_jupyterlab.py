"""The feature explorer as a user meets it: a real JupyterLab, a notebook run from its menu, and
headless Chromium (Playwright) clicking the dropdowns and typing a feature id.

Checks that the view follows the controls and that no chart is wider than its output area (the
category chart once sat beside the histogram at plotly's default 700 px and was clipped).
Everything stays on this machine: JupyterLab listens on loopback with its news and update checks
off, Chromium runs without background networking, and the kernel runs with HF_HUB_OFFLINE=1.
Screenshots land in the git-ignored outputs/browser/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import nbformat
import pytest

from saelab._util import browser

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "outputs" / "browser"
VIEWPORT = {"width": 1400, "height": 1800}
NOTEBOOK = "explorer.ipynb"
SERVER_START_S = 90
RENDER_TIMEOUT_MS = 240_000  # model load + one pass over ~20 short texts, on 2 busy cores
UPDATE_TIMEOUT_MS = 60_000
KERNEL_IDLE = re.compile(r"Python 3 \(ipykernel\) \| Idle")
SLACK_PX = 1  # sub-pixel rounding between nested boxes
MIN_CHART_PX = 300  # a chart squeezed to nothing would "fit" too
RESIZE_S = 10
NARROW = {"width": 900, "height": 1800}  # too narrow for two charts side by side: they wrap

# The notebook builds its own data: the kernel is a separate process from this test. Short
# texts keep the single model pass to seconds on CPU.
CELL = """\
import saelab
from saelab import viz

profile = saelab.profiles.get("offline")
model = profile.load_model(device="cpu")
sae = profile.load_sae(device="cpu")
texts = saelab.load_dataset()
texts = texts[texts["text"].str.len() < 160].groupby("category", sort=True).head(3)
data = viz.ExplorerData.build(
    model, {profile.default_hook: sae}, list(texts["text"]), list(texts["category"]),
    use_cache=False, progress=False,
)
viz.FeatureExplorer(data)
"""

# Turn off everything in JupyterLab that would reach out: the news feed, update checks, the
# PyPI extension manager, and the announcements plugin that asks about them.
LAB_CONFIG = {
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly",
    }
}
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


class Lab(NamedTuple):
    url: str
    token: str


# -- JupyterLab -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _private_jupyter(home: Path) -> dict[str, str]:
    """An environment whose Jupyter and IPython dirs are temporary, so nothing of the user's is
    read or written (settings, workspaces, kernelspecs, startup files)."""
    dirs = {name: home / name.lower() for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    dirs["IPYTHONDIR"] = home / "ipython"
    for path in dirs.values():
        path.mkdir(parents=True)
    config = dirs["JUPYTER_CONFIG_DIR"]
    (config / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG))
    (config / "labconfig").mkdir()
    (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    return {**os.environ, **{k: str(v) for k, v in dirs.items()}, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _write_notebook(root: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / NOTEBOOK)


def _wait_until_up(lab: Lab, server: subprocess.Popen, log: Path) -> None:
    # No proxy: a proxy from the environment must not see (or swallow) loopback requests.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with opener.open(f"{lab.url}/api/status?token={lab.token}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """End the server and its kernels (same process group), whatever the test did."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "notebooks"
    root.mkdir()
    _write_notebook(root)
    port, token = _free_port(), secrets.token_hex(16)
    args = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False",
    ]  # fmt: skip
    if os.geteuid() == 0:  # containers and CI often run as root; JupyterLab refuses without this
        args.append("--allow-root")
    log = home / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            args, env=_private_jupyter(home), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        result = Lab(f"http://127.0.0.1:{port}", token)
        _wait_until_up(result, server, log)
        yield result
    finally:
        _stop(server)


# -- Chromium -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium-based browser found: " + browser.INSTALL_HINT)
    flags = [f for f in browser.HEADLESS_FLAGS if f != "--headless"]  # Playwright adds its own
    with sync_api.sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=chromium, headless=True, args=[*flags, "--no-proxy-server"])
        try:
            context = chrome.new_context(viewport=VIEWPORT)
            yield context.new_page()
        finally:
            chrome.close()


# -- driving the UI -------------------------------------------------------------------


def _run_notebook(page, lab: Lab) -> None:
    """Open the notebook and run it from the menu, as a user would: Run > Run All Cells."""
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    # Before its kernel is connected, Run All asks which kernel to start; a user waits until the
    # status bar shows the kernel idle (the toolbar's indicator reads "idle" from the start).
    page.locator(".jp-StatusBar-Widget").get_by_text(KERNEL_IDLE).wait_for(timeout=UPDATE_TIMEOUT_MS)
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.locator(".widget-output .js-plotly-plot").nth(2).wait_for(timeout=RENDER_TIMEOUT_MS)


def _shown_feature(page) -> int:
    header = page.locator(".widget-html h3").first.inner_text()
    match = re.search(r"feature #(\d+)", header)
    assert match, f"the header names no feature: {header!r}"
    return int(match.group(1))


def _listed_feature(option: str) -> int:
    """The feature id of a ranked-list entry such as "#1945 · max activation 21.2"."""
    match = re.match(r"#(\d+) ", option)
    assert match, f"not a ranked-list entry: {option!r}"
    return int(match.group(1))


def _wait_for_feature(page, feature: int) -> None:
    """Until the header and all three chart titles name ``feature``."""
    page.wait_for_function(
        """feature => {
            const header = document.querySelector('.widget-html h3');
            const titles = [...document.querySelectorAll('.widget-output .js-plotly-plot .gtitle')];
            return header && header.textContent.includes(`feature #${feature}`) && titles.length === 3
                && titles.every(t => t.textContent.startsWith(`Feature #${feature}:`));
        }""",
        arg=feature,
        timeout=UPDATE_TIMEOUT_MS,
    )


def _values(select) -> list[str]:
    """The options' values (their labels show spaces as non-breaking ones)."""
    return select.locator("option").evaluate_all("options => options.map(o => o.value)")


def _chart_boxes(page) -> list[dict[str, Any]]:
    """Per chart: the drawn chart's box, its widget Output's box, and the cell's output area
    (the prompt column excluded), all in viewport pixels."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.widget-output .js-plotly-plot')].map(plot => {
            const box = el => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right}; };
            const cell = plot.closest('.jp-Cell-outputArea');
            return {
                title: plot.querySelector('.gtitle')?.textContent ?? '',
                chart: box(plot.querySelector('.svg-container')),
                widget: box(plot.closest('.widget-output')),
                area: box(cell.querySelector(':scope > .jp-OutputArea-child > .jp-OutputArea-output')),
            };
        })"""
    )


def _misfits(page) -> list[str]:
    """Every chart that is drawn narrow, or that reaches beyond its widget or the output area."""
    found = []
    for b in _chart_boxes(page):
        chart, width = b["chart"], b["chart"]["right"] - b["chart"]["left"]
        if width < MIN_CHART_PX:
            found.append(f"{b['title']!r} is drawn only {width:.0f} px wide")
        for name in ("widget", "area"):
            outer = b[name]
            if chart["left"] < outer["left"] - SLACK_PX or chart["right"] > outer["right"] + SLACK_PX:
                found.append(
                    f"{b['title']!r} spans {chart['left']:.0f}-{chart['right']:.0f} px, "
                    f"beyond its {name} output at {outer['left']:.0f}-{outer['right']:.0f} px"
                )
    return found


def _assert_charts_fit(page) -> None:
    """Three charts, each within its output area. Polled for a while: after the window
    changes, plotly redraws at the new width asynchronously."""
    deadline = time.monotonic() + RESIZE_S
    while (misfits := _misfits(page)) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert page.locator(".widget-output .js-plotly-plot").count() == 3
    assert not misfits, "\n".join(misfits)


@contextmanager
def _screenshot_on_failure(page) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with suppress(Exception):  # a dead browser must not hide the original failure
            _screenshot(page, "explorer_failure")
        raise


def _screenshot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png")
    if name != "explorer_failure":
        page.locator(".jp-Cell-outputArea:has(.widget-output)").screenshot(path=SHOTS / f"{name}_output.png")


# -- the test -------------------------------------------------------------------------


# `page` before `lab`: without a browser the test skips before starting JupyterLab.
def test_explorer_follows_clicks_and_typing_and_its_charts_fit_their_output_area(page, lab):
    with _screenshot_on_failure(page):
        _run_notebook(page, lab)
        _wait_for_feature(page, _shown_feature(page))
        _screenshot(page, "explorer_initial")
        _assert_charts_fit(page)

        ranked = page.get_by_label("ranked", exact=True)
        strongest = [_listed_feature(v) for v in _values(ranked)]
        category = page.get_by_label("category", exact=True)
        chosen = _values(category)[1]  # the first real category after "all texts"
        category.select_option(value=chosen)
        page.get_by_label("rank by", exact=True).select_option(value="specialist")
        page.wait_for_function(
            "([el, cat]) => [...el.options].some(o => o.value.endsWith(`(${cat})`))",
            arg=[ranked.element_handle(), chosen],
            timeout=UPDATE_TIMEOUT_MS,
        )

        before = _shown_feature(page)
        pick = next(v for v in _values(ranked) if _listed_feature(v) != before)
        ranked.select_option(value=pick)
        _wait_for_feature(page, _listed_feature(pick))

        typed = next(f for f in strongest if f != _listed_feature(pick))  # one that fires somewhere
        box = page.get_by_label("feature", exact=True)
        box.click()
        box.press("Control+A")
        box.press_sequentially(str(typed))
        box.press("Enter")
        _wait_for_feature(page, typed)
        assert category.input_value() == chosen
        _screenshot(page, "explorer_after_controls")
        _assert_charts_fit(page)

        page.set_viewport_size(NARROW)
        _assert_charts_fit(page)
        _screenshot(page, "explorer_narrow")
