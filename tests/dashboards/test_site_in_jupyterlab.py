"""The dashboard site inside JupyterLab, as notebook 06 opens it: served on loopback by
``serve_site`` and shown in a frame. (Through Jupyter's own file server it cannot work: its
sandbox policy gives the page an opaque origin, so the data scripts go without the login
cookie and are refused; this test once showed the page stuck at "Loading".)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.viz import _lab

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "dashboard.ipynb"
RENDER_TIMEOUT_MS = 120_000
CELL = f"""\
import sys
sys.path.insert(0, {str(ROOT)!r})
from IPython.display import IFrame
from saelab.dashboards import serve_site, write_site
from tests.dashboards._sample import sample_dashboard

server = serve_site(write_site(sample_dashboard(), "site"))
IFrame(server.page(), width="100%", height=600)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[_lab.Lab]:
    with _lab.running_lab(tmp_path_factory.mktemp("jupyterlab"), {NOTEBOOK: CELL}) as running:
        yield running


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with _lab.chromium_page({"width": 1280, "height": 1400}) as opened:
        yield opened


def test_the_site_opens_in_a_notebook_frame(lab, page):
    with _lab.screenshot_on_failure(page, "dashboard_in_jupyterlab"):
        _lab.run_notebook(page, lab, NOTEBOOK)
        frame = page.frame_locator(".jp-OutputArea-output iframe")
        landing = frame.get_by_role("link", name="blocks.20.hook_resid_pre").first
        landing.wait_for(timeout=RENDER_TIMEOUT_MS)
        landing.click()
        frame.locator("table.features tbody tr").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        assert frame.locator("table.features tbody tr").count() > 1
        _lab.screenshot(page, "dashboard_in_jupyterlab")
