"""The static site in a real headless Chromium, opened from file:// with every other request
refused: the landing list, searching and sorting an SAE's table, a feature's highlighted
windows, and links to a neighbour and to the same feature at another hook.

Screenshots of each page at 1280 and 900 px land in the git-ignored outputs/browser/ (site_*.png)
for a person to look at.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from saelab.dashboards.data import SaeDashboard
from saelab.dashboards.site.write import write_site
from tests.dashboards._sample import sample_dashboard
from tests.viz._lab import SHOTS, chromium_page

pytestmark = pytest.mark.slow

HOOK_A, HOOK_B = "blocks.20.hook_resid_pre", "blocks.15.hook_resid_pre"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def dashboards() -> list[SaeDashboard]:
    a = sample_dashboard(hook=HOOK_A, other_hooks=(HOOK_B,))
    a.summary["ce_loss_recovered"] = None
    return [a, sample_dashboard(hook=HOOK_B, other_hooks=(HOOK_A,), seed=1)]


@pytest.fixture(scope="module")
def site(dashboards, tmp_path_factory):
    return write_site(dashboards, tmp_path_factory.mktemp("site") / "site")


class Watched:
    """A page whose requests outside the folder are refused and recorded, and whose console
    errors and uncaught exceptions are recorded."""

    def __init__(self, page: Any) -> None:
        self.page, self.outside, self.errors = page, [], []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else self.outside.append(r.url))
        page.route("**/*", self._route)
        page.set_default_timeout(TIMEOUT_MS)

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def check(self) -> None:
        assert self.outside == [], f"requests left the folder: {self.outside}"
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture
def watched() -> Iterator[Watched]:
    with chromium_page({"width": 1280, "height": 900}) as page:
        yield Watched(page)


def fits(page: Any) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide in a {inner} px window"


def click_a_map_point(page: Any, on_map: list[int]) -> None:
    """Click the map's most isolated point (so no neighbour takes the click): its feature opens."""
    points = page.locator(".map-plot .scatterlayer .point")
    assert page.locator('.modebar-btn[data-title^="Share"]').count() == 0  # it would upload to Plotly Cloud
    points.nth(len(on_map) - 1).wait_for()
    centres = [(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2) for b in (p.bounding_box() for p in points.all())]
    assert len(centres) == len(on_map)
    gap = [min(math.dist(c, other) for j, other in enumerate(centres) if j != i) for i, c in enumerate(centres)]
    alone = gap.index(max(gap))
    page.mouse.move(*centres[alone])
    page.mouse.click(*centres[alone])
    page.wait_for_url(f"**/feature.html?sae={HOOK_A}&f={on_map[alone]}")
    page.locator("h1", has_text=f"Feature {on_map[alone]}").wait_for()
    page.go_back()
    page.locator("table.features tbody tr[data-feature]").first.wait_for()


def test_search_sort_open_a_feature_and_follow_links(site, dashboards, watched):
    page, a = watched.page, dashboards[0]
    page.goto((site / "index.html").as_uri())
    page.locator(f'.sae-card[data-sae="{HOOK_A}"]').wait_for()
    assert page.locator(".sae-card").count() == 2
    assert "not measured" in page.locator(f'.sae-card[data-sae="{HOOK_A}"]').inner_text()

    page.click(f'.sae-card[data-sae="{HOOK_A}"] h2 a')
    page.locator("table.features tbody tr[data-feature]").first.wait_for()
    assert page.locator("table.features tbody tr[data-feature]").count() == 12
    page.fill("#search", "café")
    expected = {f.feature for f in a.features.values()
                if "café" in " ".join(f.peak_tokens()) or any("café" in e.text for e in f.explanations)}  # fmt: skip
    rows = page.locator("table.features tbody tr[data-feature]")
    assert 0 < len(expected) < 12
    assert {int(r.get_attribute("data-feature")) for r in rows.all()} == expected
    for row in rows.all():
        assert "café" in row.inner_text()
    assert page.locator("#count").inner_text().startswith(f"{len(expected)} of 12")

    page.fill("#search", "")
    page.click('th[data-key="density"]')
    order = [int(r.get_attribute("data-feature")) for r in rows.all()]
    assert order == sorted(a.features, key=lambda f: (-a[f].density, f))
    page.click('th[data-key="density"]')
    assert [int(r.get_attribute("data-feature")) for r in rows.all()] == order[::-1]
    click_a_map_point(page, [f for f in sorted(a.features) if a[f].map_xy is not None])

    feature = order[0]  # the densest
    page.click(f'tr[data-feature="{feature}"] td.c-id a')
    page.wait_for_url(f"**/feature.html?sae={HOOK_A}&f={feature}")
    page.locator("#top .tok.on").first.wait_for()
    assert page.locator("h1").inner_text() == f"Feature {feature}"
    first = a[feature].top[0]
    spans = page.locator("#top .win").first.locator(".tok")
    assert spans.count() == len(first.tokens)
    for i, (token, act) in enumerate(zip(first.tokens, first.acts, strict=True)):
        span = spans.nth(i)
        assert float(span.get_attribute("data-act")) == pytest.approx(act, rel=5e-3, abs=1e-9)
        title = span.get_attribute("title")
        assert title.startswith(json.dumps(token, ensure_ascii=False) + f" · id {first.token_ids[i]} · ")
        if act > 0:
            assert f"feature {feature}: " in title and "on" in span.get_attribute("class")
            assert "255, 140, 0" in span.get_attribute("style")
    assert page.locator("#top").inner_text().count("↵") >= sum(t.count("\n") for t in first.tokens)
    assert page.locator("#top .win-text b").count() == 0 and "<b>" in page.locator("#top").inner_text()

    promoted = page.locator(".card", has_text="Direct logit effect").locator(".chip")
    assert [c.get_attribute("title").split(" · ")[0] for c in promoted.all()] == [
        json.dumps(t.token, ensure_ascii=False) for t in (*a[feature].promoted, *a[feature].suppressed)
    ]

    neighbour = a[feature].decoder_neighbours[0].feature
    page.click(f'.feature-link[href$="f={neighbour}"] >> nth=0')
    page.wait_for_url(f"**/feature.html?sae={HOOK_A}&f={neighbour}")
    page.locator("h1", has_text=f"Feature {neighbour}").wait_for()

    match = next(m for m in a[neighbour].matches if m.hook == HOOK_B)
    page.click(".match-link")
    page.wait_for_url(f"**/feature.html?sae={HOOK_B}&f={match.feature}")
    page.locator("h1", has_text=f"Feature {match.feature}").wait_for()
    assert HOOK_B in page.locator("#crumbs").inner_text()
    page.click("#back")
    page.wait_for_url(f"**/sae.html?sae={HOOK_B}*")
    watched.check()


def test_a_feature_that_never_fired_and_one_not_in_the_dashboard(site, watched):
    page = watched.page
    page.goto((site / "feature.html").as_uri() + f"?sae={HOOK_A}&f=3")
    never = page.locator("#never")
    never.wait_for()
    assert "Never fired on 10,000 tokens" in never.inner_text()
    assert "no explanations" in page.locator("main").inner_text()
    page.goto((site / "feature.html").as_uri() + f"?sae={HOOK_A}&f=99")
    page.locator(".notice").wait_for()
    assert "Feature 99 is not in this dashboard: it holds 12 features of 12" in page.locator(".notice").inner_text()
    page.goto((site / "sae.html").as_uri() + "?sae=nope")
    page.locator(".notice").wait_for()
    assert 'no SAE named "nope"' in page.locator(".notice").inner_text()
    watched.check()


def test_a_damaged_data_file_shows_an_error(site, tmp_path):
    copy = shutil.copytree(site, tmp_path / "site")
    (copy / "data" / HOOK_A / "f0.js").write_text('saelabPack("oops",')
    with chromium_page({"width": 1280, "height": 900}) as page:
        watched = Watched(page)
        page.goto((copy / "feature.html").as_uri() + f"?sae={HOOK_A}&f=0")
        page.locator(".card.error").wait_for()
        assert f"data/{HOOK_A}/f0.js did not hand over its data" in page.locator(".card.error").inner_text()
        assert watched.outside == [] and watched.errors  # the syntax error and the failure are in the console


@pytest.mark.parametrize("width", [1280, 900])
def test_pages_fit_the_window(site, width):
    with chromium_page({"width": width, "height": 900}) as page:
        watched = Watched(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        for name, query, ready in [
            ("index", "", ".sae-card"),
            ("sae", f"?sae={HOOK_A}", ".map-plot .main-svg"),
            ("feature", f"?sae={HOOK_A}&f=0", "#top .tok.on"),
        ]:
            page.goto((site / f"{name}.html").as_uri() + query)
            page.locator(ready).first.wait_for()
            fits(page)
            page.screenshot(path=SHOTS / f"site_{name}_{width}.png", full_page=True)
        watched.check()
