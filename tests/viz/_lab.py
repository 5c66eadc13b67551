"""A real JupyterLab and a headless Chromium (Playwright) for tests that drive widgets as a user
does: the notebook is run from the Run menu, controls are clicked and typed into.

Everything stays on this machine: JupyterLab listens on loopback with its news and update checks
off and private Jupyter/IPython dirs, Chromium runs without background networking or a proxy,
and the kernel runs with HF_HUB_OFFLINE=1. Screenshots land in the git-ignored outputs/browser/
for a person to look at.
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import nbformat
import pytest

from saelab._util import browser

SHOTS = Path(__file__).resolve().parents[2] / "outputs" / "browser"
SERVER_START_S = 90
KERNEL_IDLE = re.compile(r"Python 3 \(ipykernel\) \| Idle")
KERNEL_IDLE_TIMEOUT_MS = 60_000

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


def write_notebook(path: Path, *cells: str) -> None:
    """A notebook of code ``cells`` with the python3 kernel."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


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


@contextmanager
def running_lab(home: Path, notebooks: Mapping[str, str]) -> Iterator[Lab]:
    """JupyterLab on loopback, serving ``home/notebooks`` with one notebook per ``{name: cell}``;
    stopped, kernels and all, on exit."""
    root = home / "notebooks"
    root.mkdir()
    for name, cell in notebooks.items():
        write_notebook(root / name, cell)
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
        lab = Lab(f"http://127.0.0.1:{port}", token)
        _wait_until_up(lab, server, log)
        yield lab
    finally:
        _stop(server)


# -- Chromium -------------------------------------------------------------------------


@contextmanager
def chromium_page(viewport: Mapping[str, int]) -> Iterator[Any]:
    """A Playwright page in the system's headless Chromium; skips the test when there is no
    Playwright or no Chromium (nothing is downloaded)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    chromium = browser.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium-based browser found: " + browser.INSTALL_HINT)
    flags = [f for f in browser.HEADLESS_FLAGS if f != "--headless"]  # Playwright adds its own
    with sync_api.sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=chromium, headless=True, args=[*flags, "--no-proxy-server"])
        try:
            context = chrome.new_context(viewport=dict(viewport))
            yield context.new_page()
        finally:
            chrome.close()


# -- driving the UI -------------------------------------------------------------------


def run_notebook(page, lab: Lab, name: str) -> None:
    """Open notebook ``name`` and run it from the menu, as a user would: Run > Run All Cells.
    Returns once the run has started; the caller waits for what the notebook shows."""
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    # Before its kernel is connected, Run All asks which kernel to start; a user waits until the
    # status bar shows the kernel idle (the toolbar's indicator reads "idle" from the start).
    page.locator(".jp-StatusBar-Widget").get_by_text(KERNEL_IDLE).wait_for(timeout=KERNEL_IDLE_TIMEOUT_MS)
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def screenshot(page, name: str, output: str | None = None) -> None:
    """``outputs/browser/{name}.png`` of the window, and ``{name}_output.png`` of the first cell
    output matching ``output`` (a CSS selector) when given."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png")
    if output is not None:
        page.locator(f".jp-Cell-outputArea:has({output})").first.screenshot(path=SHOTS / f"{name}_output.png")


@contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    """A screenshot of the window (``{name}.png``) when the block fails, then the failure."""
    try:
        yield
    except BaseException:
        with suppress(Exception):  # a dead browser must not hide the original failure
            screenshot(page, name)
        raise
