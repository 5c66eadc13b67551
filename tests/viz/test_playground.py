"""saelab.viz.playground: the steering playground driven from code, on a fake steerer of the
Steerer's shape that records its calls, so every shown number and text is known. One test
drives the real Steerer on the real model."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from saelab.viz.playground import NO_CONCEPT, SteeringPlayground
from saelab.viz.playground_view import HISTORY_FIELDS

NASTY = "<script>alert('x')</script> & \"quotes\"\n  indented"


@dataclass(frozen=True)
class FakeOutcome:
    prompt: str
    feature: int
    strength: float
    unit: str
    mode: str
    seed: int
    baseline: str
    steered: str
    concept: str | None
    concept_baseline: float | None
    concept_steered: float | None
    perplexity_baseline: float
    perplexity_steered: float
    relevance_baseline: float
    relevance_steered: float
    distinct2_baseline: float = 1.0
    distinct2_steered: float = 1.0


@dataclass
class FakeSteerer:
    """Checks its input as the real one does; its outputs are simple functions of the input."""

    d_sae: int = 20
    hook: str = "blocks.2.hook_resid_pre"
    concepts: list[str] = field(default_factory=lambda: ["math", "python", "social"])
    features: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "feature": [7, 3, 12],
                "category": ["python", "math", "math"],
                "label": ["#7 · python specialist · AUROC 0.98", "#3 · math specialist · AUROC 0.91", "#12 · math"],
            }
        )
    )
    baseline: str = "the weather is nice"
    steered: str | None = None
    calls: list[dict] = field(default_factory=list)

    def run(self, prompt, feature, strength, *, mode="add", unit="max", concept=None, seed=0):
        self.calls.append(
            dict(prompt=prompt, feature=feature, strength=strength, mode=mode, concept=concept, seed=seed)
        )
        if not prompt.strip():
            raise ValueError("prompt is empty")
        if math.isnan(strength):
            raise ValueError("strength is NaN")
        if not 0 <= feature < self.d_sae:
            raise ValueError(f"feature {feature} is out of range (d_sae={self.d_sae})")
        probe = concept is not None
        return FakeOutcome(
            prompt, feature, strength, unit, mode, seed,
            baseline=self.baseline,
            steered=f"steered {feature} {mode} {strength:g} {seed}" if self.steered is None else self.steered,
            concept=concept,
            concept_baseline=0.125 if probe else None,
            concept_steered=0.625 if probe else None,
            perplexity_baseline=10.0, perplexity_steered=10.0 + strength,
            relevance_baseline=-2.0, relevance_steered=-2.0 - strength / 10,
        )  # fmt: skip


class _Columns(HTMLParser):
    """Text of each side's continuation and its metric cells, read back from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.metrics: dict[tuple[str, str], str] = {}
        self._side: str | None = None
        self._into: tuple[str, ...] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("data-side"):
            self._side = attrs["data-side"]
        elif self._side and attrs.get("class") == "saelab-steer-text":
            self._into = ("text", self._side)
            self.text[self._side] = ""
        elif self._side and attrs.get("data-metric"):
            self._into = ("metric", self._side, attrs["data-metric"])

    def handle_endtag(self, tag):
        if tag in ("div", "td"):
            self._into = None

    def handle_data(self, data):
        if self._into and self._into[0] == "text":
            self.text[self._into[1]] += data
        elif self._into:
            self.metrics[self._into[1:]] = data


def columns(fragment: str) -> _Columns:
    parser = _Columns()
    parser.feed(fragment)
    return parser


@pytest.fixture
def steerer() -> FakeSteerer:
    return FakeSteerer()


# -- controls ---------------------------------------------------------------------------


def test_starts_on_the_best_ranked_feature_with_its_category_as_concept(steerer):
    pg = SteeringPlayground(steerer)
    assert [v for _, v in pg.feature_select.options] == [7, 3, 12]
    assert pg.feature_select.label == "#7 · python specialist · AUROC 0.98"
    s = pg.settings
    assert (s.feature, s.concept, s.strength, s.mode, s.unit, s.seed) == (7, "python", 4.0, "add", "max", 0)
    assert (pg.strength_slider.min, pg.strength_slider.max, pg.strength_slider.step) == (-8.0, 16.0, 0.5)
    assert pg.concept_select.options[0] == (NO_CONCEPT, "")
    assert pg.outcome is None and pg.history == [] and steerer.calls == []  # nothing runs until Generate
    assert "application/vnd.jupyter.widget-view+json" in pg._repr_mimebundle_()


def test_picking_from_the_list_sets_the_id_and_typing_an_id_selects_it(steerer):
    pg = SteeringPlayground(steerer)
    pg.feature_select.value = 3
    assert pg.feature_input.value == 3 and pg.concept_select.value == "math"
    pg.feature_input.value = 7
    assert pg.feature_select.value == 7 and pg.concept_select.value == "python"
    pg.concept_select.value = "social"
    pg.feature_input.value = 15  # not ranked: the list shows no choice, the concept stays
    assert pg.feature_select.value is None and pg.concept_select.value == "social"
    assert pg.settings.feature == 15


def test_set_controls_checks_its_input_and_widens_the_slider(steerer):
    pg = SteeringPlayground(steerer)
    pg.set_controls(prompt="Once", feature=3, strength=32.0, mode="clamp", concept="", seed=5)
    s = pg.settings
    assert (s.prompt, s.feature, s.strength, s.mode, s.concept, s.seed) == ("Once", 3, 32.0, "clamp", None, 5)
    assert pg.strength_slider.max == 32.0
    with pytest.raises(ValueError, match="mode must be one of"):
        pg.set_controls(mode="multiply")
    with pytest.raises(ValueError, match="Unknown concept 'urls'"):
        pg.set_controls(concept="urls")
    with pytest.raises(ValueError, match="unit must be one of"):
        SteeringPlayground(steerer, unit="sigma")
    with pytest.raises(ValueError, match="feature and label"):
        SteeringPlayground(FakeSteerer(features=pd.DataFrame({"feature": [1]})))


# -- generating -------------------------------------------------------------------------


def test_generate_runs_the_controls_and_shows_both_sides_with_their_numbers(steerer):
    pg = SteeringPlayground(steerer)
    pg.set_controls(prompt="Let me tell you", strength=2.5, seed=3)
    outcome = pg.generate()
    assert steerer.calls == [
        dict(prompt="Let me tell you", feature=7, strength=2.5, mode="add", concept="python", seed=3)
    ]
    assert pg.outcome is outcome and pg.history == [outcome] and pg.error is None
    shown = columns(pg.comparison.value)
    assert shown.text == {"baseline": "the weather is nice", "steered": "steered 7 add 2.5 3"}
    assert shown.metrics == {
        ("baseline", "concept"): "12.5%", ("baseline", "perplexity"): "10", ("baseline", "relevance"): "-2.000",
        ("steered", "concept"): "62.5%", ("steered", "perplexity"): "12.5", ("steered", "relevance"): "-2.250",
        ("baseline", "distinct2"): "1.00", ("steered", "distinct2"): "1.00",
    }  # fmt: skip
    assert "P(python) +50.0 pp · perplexity ×1.25 · relevance -0.250 nats/token" in pg.comparison.value
    assert "run 1 generated in" in pg.status.value and not pg.generate_button.disabled


def test_the_button_generates_and_the_history_keeps_every_run(steerer):
    pg = SteeringPlayground(steerer)
    pg.prompt_input.value = "The recipe"
    pg.generate_button.click()
    pg.mode_toggle.value = "clamp"
    pg.strength_slider.value = 6.0
    pg.generate_button.click()
    assert [(c["mode"], c["strength"]) for c in steerer.calls] == [("add", 4.0), ("clamp", 6.0)]
    frame = pg.history_frame()
    assert list(frame.columns) == list(HISTORY_FIELDS) and len(frame) == 2
    assert frame["steered"].tolist() == ["steered 7 add 4 0", "steered 7 clamp 6 0"]
    assert frame["perplexity_steered"].tolist() == [14.0, 16.0]
    # Newest first in the table.
    view = pg.history_view.value
    assert "history (2 runs, newest first)" in view
    assert view.index("steered 7 clamp 6 0") < view.index("steered 7 add 4 0")


def test_texts_are_escaped_everywhere(steerer):
    steerer.baseline, steerer.steered = NASTY, NASTY + "<b>"
    pg = SteeringPlayground(steerer)
    pg.set_controls(prompt=NASTY).generate()
    for fragment in (pg.comparison.value, pg.history_view.value):
        assert "<script" not in fragment and "&lt;script&gt;" in fragment
    shown = columns(pg.comparison.value)
    assert shown.text == {"baseline": NASTY, "steered": NASTY + "<b>"}  # whitespace kept, too


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        (dict(prompt="   "), "prompt is empty"),
        (dict(strength=math.nan), "strength is NaN"),
        (dict(feature=20), "feature 20 is out of range"),
    ],
)
def test_bad_input_shows_in_the_status_line_and_keeps_the_last_comparison(steerer, controls, message):
    pg = SteeringPlayground(steerer)
    first = pg.set_controls(prompt="Hello").generate()
    shown = pg.comparison.value
    assert pg.set_controls(**controls).generate() is None
    assert pg.error.startswith(message) and message in pg.status.value and "error" in pg.status.value
    assert pg.history == [first] and pg.outcome is first and pg.comparison.value == shown
    assert not pg.generate_button.disabled
    pg.generate_button.click()  # through the button too: no exception escapes
    assert len(steerer.calls) == 3


def test_an_unexpected_failure_shows_and_propagates(steerer, monkeypatch):
    pg = SteeringPlayground(steerer)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(steerer, "run", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        pg.set_controls(prompt="Hi").generate()
    assert "failed: RuntimeError: CUDA out of memory" in pg.status.value and not pg.generate_button.disabled


def test_without_the_probe_no_concept_numbers_are_shown(steerer):
    steerer.steered = ""
    pg = SteeringPlayground(steerer).set_controls(prompt="Hi", concept="")
    pg.generate()
    assert steerer.calls[-1]["concept"] is None
    shown = columns(pg.comparison.value)
    assert shown.metrics[("steered", "concept")] == "—"
    assert "pp ·" not in pg.comparison.value and "perplexity ×1.40" in pg.comparison.value
    assert "(no tokens generated)" in pg.comparison.value


# -- export -----------------------------------------------------------------------------


def test_to_html_writes_the_comparison_and_history_as_a_static_page(steerer, tmp_path):
    steerer.steered = NASTY
    pg = SteeringPlayground(steerer)
    with pytest.raises(ValueError, match="generate a continuation first"):
        pg.to_html(tmp_path / "none.html")
    pg.set_controls(prompt="One").generate()
    pg.set_controls(prompt="Two", feature=3).generate()
    path = pg.to_html(tmp_path / "deep" / "steer.html")
    page = Path(path).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert "<title>Steering · feature #3 · 4 × typical max</title>" in page
    assert columns(page).text == {"baseline": "the weather is nice", "steered": NASTY}
    assert "history (2 runs, newest first)" in page and page.count("<tr><td class='num'>") == 2
    assert ".saelab-steer-cols" in page  # the CSS is inline


# -- the real thing ---------------------------------------------------------------------


@pytest.mark.slow  # builds the specialist ranking and feature statistics: about 35 s on 2 CPU cores
@pytest.mark.skipif(importlib.util.find_spec("saelab.interventions.steerer") is None, reason="no Steerer yet")
def test_drives_the_real_steerer(model, make_sae, tmp_path):
    from saelab.interventions import steerer as interventions

    sae = make_sae(model.cfg.d_model, 32, "blocks.2.hook_resid_pre", seed=1)
    texts = ["def f(x):\n    return x", "for i in range(3): pass", "The sum of 2 and 3 is 5.", "x^2 - 1 = 0"]
    steerer = interventions.Steerer.build(
        model, sae, max_new_tokens=4, texts=texts, labels=["python", "python", "math", "math"]
    )
    pg = SteeringPlayground(steerer)
    pg.set_controls(prompt="I think that", strength=8.0, mode="add")
    outcome = pg.generate()
    assert pg.error is None, pg.error
    assert isinstance(outcome, interventions.SteeringOutcome)
    assert outcome.feature == pg.settings.feature and outcome.strength == 8.0
    shown = columns(pg.comparison.value)
    assert shown.text == {"baseline": outcome.baseline, "steered": outcome.steered}
    assert pg.set_controls(feature=32).generate() is None and "range" in pg.error
    assert pg.to_html(tmp_path / "real.html").exists()
