"""The steering playground as a user meets it: a real JupyterLab, a notebook run from its menu
that builds a real Steerer on the bundled SAE, and headless Chromium (Playwright) typing a
prompt, picking a ranked feature, setting the strength and clicking Generate.

Checks that the baseline and steered continuations appear side by side, non-empty and different,
for the feature and strength that were picked, and that an empty prompt shows an error in the
status line instead of breaking the widget. JupyterLab and Chromium come from tests/viz/_lab.py
(everything stays on this machine); screenshots land in the git-ignored outputs/browser/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.viz import _lab

pytestmark = pytest.mark.slow

VIEWPORT = {"width": 1400, "height": 1400}
NOTEBOOK = "playground.ipynb"
BUILD_TIMEOUT_MS = 480_000  # model load, feature statistics, specialist ranking and probe, on 2 busy cores
GENERATE_TIMEOUT_MS = 120_000  # 2 x 12 new tokens and their scores
UPDATE_TIMEOUT_MS = 30_000
PROMPT = "My favourite way to spend a weekend is"
STRENGTH = 8.0
OUTPUT = ".saelab-steer-status"  # the cell output that holds the playground

CELL = """\
import saelab
from saelab import viz
from saelab.interventions import Steerer

profile = saelab.profiles.get("offline")
model = profile.load_model(device="cpu")
sae = profile.load_sae(device="cpu")
steerer = Steerer.build(model, sae, max_new_tokens=12)
viz.SteeringPlayground(steerer)
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


def _wait_for_playground(page) -> None:
    """Until the Generate button shows; a traceback in the cell fails at once with its text."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('.widget-button')].some(b => b.textContent.includes('Generate'))
            || [...document.querySelectorAll('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')]
                .some(e => e.textContent.includes('Error'))""",
        timeout=BUILD_TIMEOUT_MS,
    )
    errors = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not [e for e in errors if "Error" in e], errors


def _type_prompt(page, text: str) -> None:
    box = page.get_by_label("prompt", exact=True)
    box.click()
    box.press("Control+A")
    box.press("Delete")
    if text:
        box.press_sequentially(text)
    box.blur()  # a Textarea sends its value on each keystroke; blur makes sure the last one went


def _pick_feature(page) -> int:
    """Pick the second ranked feature from the list; returns its id, once the id box shows it."""
    ranked = page.get_by_label("ranked", exact=True)
    values = ranked.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert len(values) >= 2, values
    ranked.select_option(value=values[1])
    match = re.match(r"#(\d+)\D", values[1].replace("\xa0", " "))
    assert match, f"not a ranked-list label: {values[1]!r}"
    feature = int(match.group(1))
    page.wait_for_function(
        "([box, f]) => box.value === String(f)",
        arg=[page.get_by_label("feature", exact=True).element_handle(), feature],
        timeout=UPDATE_TIMEOUT_MS,
    )
    return feature


def _set_strength(page, value: float) -> None:
    """Drag the slider's handle to the right, then type the exact value into its readout."""
    slider = page.locator(".widget-slider:has(label:text-is('strength'))")
    handle = slider.locator(".noUi-handle")
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{value:g}")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "([el, v]) => parseFloat(el.textContent) === v",
        arg=[readout.element_handle(), value],
        timeout=UPDATE_TIMEOUT_MS,
    )


def _generate_and_wait(page, expect: str) -> None:
    """Click Generate; wait until the status line reads ``expect`` (a regular expression)."""
    page.get_by_role("button", name="Generate").click()
    page.locator(OUTPUT).filter(has_text=re.compile(expect)).wait_for(timeout=GENERATE_TIMEOUT_MS)


def _column_text(page, side: str) -> str:
    return page.locator(f".saelab-steer-col[data-side='{side}'] .saelab-steer-text").inner_text()


# -- the test -------------------------------------------------------------------------


# `page` before `lab`: without a browser the test skips before starting JupyterLab.
def test_playground_generates_baseline_and_steered_text_from_clicks_and_typing(page, lab):
    with _lab.screenshot_on_failure(page, "playground_failure"):
        _lab.run_notebook(page, lab, NOTEBOOK)
        _wait_for_playground(page)
        _lab.screenshot(page, "playground_initial", output=OUTPUT)

        _type_prompt(page, PROMPT)
        feature = _pick_feature(page)
        _set_strength(page, STRENGTH)
        _generate_and_wait(page, r"^run 1 generated in")

        settings = page.locator(".saelab-steer-settings").inner_text()
        assert f"feature #{feature} · add {STRENGTH:g} × typical max" in settings, settings
        prompt = page.locator(".saelab-steer-prompt .saelab-steer-text").inner_text()
        assert prompt == PROMPT
        baseline, steered = _column_text(page, "baseline"), _column_text(page, "steered")
        assert baseline.strip() and steered.strip(), (baseline, steered)
        assert baseline != steered, f"steering at {STRENGTH:g} x typical max changed nothing: {steered!r}"
        assert page.locator(".saelab-steer-history tbody tr").count() == 1
        _lab.screenshot(page, "playground_generated", output=OUTPUT)

        _type_prompt(page, "")
        _generate_and_wait(page, r"^error: ")
        assert _column_text(page, "steered") == steered  # the last comparison stays
        _lab.screenshot(page, "playground_error", output=OUTPUT)
