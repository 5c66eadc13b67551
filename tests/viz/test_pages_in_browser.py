"""Exported HTML pages rendered by a real headless Chromium: the DOM it builds, and a screenshot.

The screenshots land in the repo's git-ignored ``outputs/`` folder so a person can look at them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from saelab import viz
from saelab._util import browser
from saelab.viz import explorer_view

pytestmark = pytest.mark.slow

OUTPUTS = Path(__file__).resolve().parents[2] / "outputs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = browser.find_chromium()
    if path is None:
        pytest.skip("no Chromium-based browser found: " + browser.INSTALL_HINT)
    return path


def _run(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *browser.HEADLESS_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def dump_dom(chromium: str, page: Path, profile: Path) -> str:
    return _run(chromium, profile, "--dump-dom", page.as_uri()).stdout


def screenshot(chromium: str, page: Path, out: Path, profile: Path, size: str = "1100,800") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    _run(chromium, profile, f"--screenshot={out}", f"--window-size={size}", "--hide-scrollbars", page.as_uri())
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 5_000  # a blank page is ~2 KB
    return out


def _token_values(dom: str) -> list[tuple[str, str]]:
    return re.findall(r'<span class="tok" data-value="([^"]+)" data-tip="[^"]*" title="([^"]+)"', dom)


def test_token_highlight_page_renders_tokens_and_hover_values(chromium, tmp_path):
    texts = {
        "math": (["f", "(x", ")", " =", " x", "^", "2", " +", " 1"], [0, 0.3, 0, 25.4, 0.7, 34.4, 4.9, 49.4, 0]),
        "python": (
            ["def", " area", "(r", "):\n", "    return", " 3", ".14", " *", " r"],
            [0, 0, 1.2, 3.5, 0, 0, 0, 12.0, 0],
        ),
        "conversational": (["I", "'m", " so", " tired", " today", " 😴"], [0, 0, 0, 0, 0, 0]),
    }
    block = viz.highlight_texts(
        [t for t, _ in texts.values()],
        [v for _, v in texts.values()],
        groups=list(texts),
        target="math",
        title="Feature 22917 (math specialist): activation per token",
        label="feature 22917",
    )
    page = block.save(tmp_path / "highlight.html")
    dom = dump_dom(chromium, page, tmp_path / "profile")
    for token in ["def", " area", "    return", " =", "^", " tired", " 😴"]:
        assert f">{token}<" in dom, token
    values = dict(_token_values(dom))
    assert values["49.4"] == "feature 22917: 49.40"
    assert values["3.5"] == "feature 22917: 3.50"
    assert "⏎" in dom and "math" in dom and "conversational" in dom
    shot = screenshot(chromium, page, OUTPUTS / "browser" / "token_highlight.png", tmp_path / "profile")
    assert shot.is_file()


TEXTS = [
    "def area(r):\n    return 3.14 * r ** 2",
    "import os\nprint(os.listdir('.'))",
    "x^2 + 2x + 1 = (x + 1)^2",
    "The derivative of sin(x) is cos(x).",
    "Der Hund spielt im Garten.",
    "Hola, ¿qué tal estás hoy?",
    "lol this is the best day ever #blessed",
    "Pursuant to section 4, the parties agree as follows.",
    "Hey, do you want to grab lunch later?",
]
LABELS = ["python", "python", "math", "math", "non_english", "non_english", "social", "formal", "conversational"]


def test_feature_explorer_page_renders_offline(chromium, model, make_sae, tmp_path):
    saes = {"layer 3": make_sae(model.cfg.d_model, 64, "blocks.3.hook_resid_pre", seed=7)}
    data = viz.ExplorerData.build(model, saes, TEXTS, LABELS, use_cache=False)
    explorer = viz.FeatureExplorer(data).select(category="math")
    page = explorer.to_html(tmp_path / "explorer.html")
    dom = dump_dom(chromium, page, tmp_path / "profile")
    # plotly.js (inlined) ran and drew the three charts.
    assert dom.count('class="main-svg"') >= 3
    assert f"layer 3 · feature #{explorer.view.feature}" in dom
    assert explorer_view.NO_NEURONPEDIA in dom
    # The top examples are there token by token, with their hover values.
    values = _token_values(dom)
    label = f"feature {explorer.view.feature}: "
    assert values and all(title.startswith(label) for _, title in values)
    first_text = explorer.examples.rows[0].tokens
    assert all(f">{tok}<" in dom or "\n" in tok for tok in first_text)
    assert max(float(v) for v, _ in values) == pytest.approx(explorer.examples.vmax, rel=1e-5)
    screenshot(chromium, page, OUTPUTS / "browser" / "feature_explorer.png", tmp_path / "profile", size="1200,2300")
