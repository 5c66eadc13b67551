"""The feature explorer as a user meets it: a real JupyterLab, a notebook run from its menu, and
headless Chromium (Playwright) clicking the dropdowns and typing a feature id.

Checks that the view follows the controls and that no chart is wider than its output area (the
category chart once sat beside the histogram at plotly's default 700 px and was clipped).
JupyterLab and Chromium come from tests/viz/_lab.py (everything stays on this machine);
screenshots land in the git-ignored outputs/browser/ for a person to look at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.viz import _lab

pytestmark = pytest.mark.slow

VIEWPORT = {"width": 1400, "height": 1800}
NOTEBOOK = "explorer.ipynb"
RENDER_TIMEOUT_MS = 240_000  # model load + one pass over ~20 short texts, on 2 busy cores
UPDATE_TIMEOUT_MS = 60_000
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[_lab.Lab]:
    with _lab.running_lab(tmp_path_factory.mktemp("jupyterlab"), {NOTEBOOK: CELL}) as running:
        yield running


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with _lab.chromium_page(VIEWPORT) as opened:
        yield opened


# -- driving the UI -------------------------------------------------------------------


def _run_notebook(page, lab: _lab.Lab) -> None:
    """Run the notebook from the menu; wait until all three charts are drawn."""
    _lab.run_notebook(page, lab, NOTEBOOK)
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


def _screenshot(page, name: str) -> None:
    _lab.screenshot(page, name, output=".widget-output")


# -- the test -------------------------------------------------------------------------


# `page` before `lab`: without a browser the test skips before starting JupyterLab.
def test_explorer_follows_clicks_and_typing_and_its_charts_fit_their_output_area(page, lab):
    with _lab.screenshot_on_failure(page, "explorer_failure"):
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
