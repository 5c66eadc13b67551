"""The steering playground (ipywidgets): type a prompt, pick a feature, a strength and a mode,
and read the unsteered and steered continuations side by side, each with the concept probe's
probability, its perplexity and its relevance to the prompt.

It drives a steerer (:class:`saelab.interventions.Steerer`, or anything of the same shape) and
never runs the model itself. Generation takes seconds on CPU, so it runs when Generate is
clicked, not on every slider move. State lives on the object (:attr:`outcome`, :attr:`history`,
:attr:`error`), so tests set the controls and call :meth:`generate` without a browser or kernel.
The styles live in ``playground.css`` beside this file.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import ipywidgets as ipw
import pandas as pd

from saelab.interventions.steering import UNITS, StrengthUnit
from saelab.viz.playground_view import (
    CSS,
    Outcome,
    comparison_html,
    history_frame,
    history_html,
    page_html,
)
from saelab.viz.widget_base import WidgetPanel, row, set_given, write_page

STRENGTH_RANGE = (-8.0, 16.0)
"""The slider's default range, in units of the feature's typical max activation."""
NO_CONCEPT = "no probe"
"""The concept list's entry for running without the concept probe."""
MODES = ("add", "clamp")


class SteererLike(Protocol):
    """What the playground drives (:class:`saelab.interventions.Steerer`)."""

    @property
    def d_sae(self) -> int: ...
    @property
    def features(self) -> pd.DataFrame: ...
    @property
    def concepts(self) -> Sequence[str]: ...
    def run(
        self,
        prompt: str,
        feature: int,
        strength: float,
        *,
        mode: str = ...,
        unit: StrengthUnit = ...,
        concept: str | None = ...,
        seed: int = ...,
    ) -> Outcome: ...


@dataclass(frozen=True)
class PlaygroundSettings:
    """What the controls hold now: the arguments of the next ``steerer.run``."""

    prompt: str
    feature: int
    strength: float
    """In units of the feature's typical max activation (``unit="max"``) or raw."""
    mode: str
    unit: StrengthUnit
    concept: str | None
    """The category the concept probe scores; None runs without the probe."""
    seed: int


# -- the widget ---------------------------------------------------------------------------


class SteeringPlayground(WidgetPanel):
    """Steer by hand: a prompt, a feature (from the steerer's ranked list or typed as an id), a
    strength, add or clamp, a concept for the probe and a seed; Generate shows the unsteered and
    steered continuations side by side with their concept probability, perplexity and relevance.

    ``set_controls(...)`` and ``generate()`` drive it from code; every run is kept in
    :attr:`history` (see :meth:`history_frame`), and ``to_html(path)`` saves the comparison and
    the history as a static page. Bad input (an empty prompt, a feature out of range) shows in
    the status line and in :attr:`error`; it does not raise.
    """

    def __init__(
        self,
        steerer: SteererLike,
        *,
        strength: float = 4.0,
        strength_range: tuple[float, float] = STRENGTH_RANGE,
        step: float = 0.5,
        unit: StrengthUnit = "max",
    ) -> None:
        if not strength_range[0] < strength_range[1] or step <= 0:
            raise ValueError(f"need strength_range low < high and step > 0, got {strength_range} and {step}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {list(UNITS)}, got {unit!r}")
        if "feature" not in steerer.features or "label" not in steerer.features:
            raise ValueError(f"steerer.features needs columns feature and label, has {list(steerer.features.columns)}")
        self.steerer = steerer
        self.unit: StrengthUnit = unit
        ranked = steerer.features.drop_duplicates("feature")
        categories = list(ranked["category"]) if "category" in ranked else [None] * len(ranked)
        self._categories: dict[int, str | None] = {
            int(f): None if c is None else str(c) for f, c in zip(ranked["feature"], categories, strict=True)
        }
        """Ranked feature -> its category (None when the steerer gives none), in ranked order."""
        self.outcome: Outcome | None = None
        self.history: list[Outcome] = []
        self.error: str | None = None
        self._build_controls(ranked, strength, strength_range, step)
        self._assemble(self._layout())
        if self._categories:
            self.feature_select.value = next(iter(self._categories))  # the observers sync the rest
        self._set_status("Type a prompt, pick a feature and a strength, then Generate.")

    def _build_controls(self, ranked: pd.DataFrame, strength: float, bounds: tuple[float, float], step: float) -> None:
        wide = ipw.Layout(width="420px")
        self.prompt_input = ipw.Textarea(
            description="prompt", placeholder="Type a prompt…", layout=ipw.Layout(width="100%", height="70px")
        )
        options = [(str(label), int(f)) for label, f in zip(ranked["label"], ranked["feature"], strict=True)]
        self.feature_select = ipw.Dropdown(options=options, value=None, description="ranked", layout=wide)
        self.feature_input = ipw.IntText(
            value=0,
            description="feature",
            tooltip=f"a feature id, 0 to {self.steerer.d_sae - 1}",
            layout=ipw.Layout(width="200px"),
        )
        unit = "× typical max" if self.unit == "max" else "raw"
        self.strength_slider = ipw.FloatSlider(
            value=strength, min=bounds[0], max=bounds[1], step=step, description="strength",
            continuous_update=False, readout_format=".1f", tooltip=f"steering strength ({unit})", layout=wide,
        )  # fmt: skip
        self.mode_toggle = ipw.ToggleButtons(
            options=list(MODES),
            value="add",
            description="mode",
            tooltips=["add the feature's decoder direction", "set the feature's activation"],
        )
        self.concept_select = ipw.Dropdown(
            options=[(NO_CONCEPT, ""), *((c, c) for c in self.steerer.concepts)], value="", description="concept"
        )
        self.seed_input = ipw.IntText(value=0, description="seed", layout=ipw.Layout(width="200px"))
        self.generate_button = ipw.Button(description="Generate", button_style="primary", icon="play")
        self.status = ipw.HTML()
        self.comparison = ipw.HTML()
        self.history_view = ipw.HTML()
        self.feature_select.observe(self._on_pick, names="value")
        self.feature_input.observe(self._on_typed, names="value")
        self.generate_button.on_click(lambda _button: self.generate())

    def _layout(self) -> list[ipw.Widget]:
        """The styles, the prompt, the controls in rows, the comparison and the history."""
        return [
            ipw.HTML(f"<style>{CSS}</style>"),
            self.prompt_input,
            row(self.feature_select, self.feature_input, align_items="center"),
            row(self.strength_slider, self.mode_toggle, align_items="center"),
            row(self.concept_select, self.seed_input, align_items="center"),
            row(self.generate_button, self.status, align_items="center"),
            self.comparison,
            self.history_view,
        ]

    # -- controls ----------------------------------------------------------------------

    @property
    def settings(self) -> PlaygroundSettings:
        """The controls' values, as the next run will use them."""
        return PlaygroundSettings(
            prompt=str(self.prompt_input.value),
            feature=int(self.feature_input.value),
            strength=float(self.strength_slider.value),
            mode=str(self.mode_toggle.value),
            unit=self.unit,
            concept=str(self.concept_select.value) or None,
            seed=int(self.seed_input.value),
        )

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] is None:
            return
        with self._sync():
            self.feature_input.value = int(change["new"])
            self._default_concept(int(change["new"]))

    def _on_typed(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        feature = int(change["new"])
        with self._sync():
            self.feature_select.value = feature if feature in self._categories else None
            self._default_concept(feature)

    def _default_concept(self, feature: int) -> None:
        """A ranked feature's category becomes the concept the probe scores, when it knows it."""
        category = self._categories.get(feature)
        if category is not None and category in self.steerer.concepts:
            self.concept_select.value = category

    def set_controls(
        self,
        *,
        prompt: str | None = None,
        feature: int | None = None,
        strength: float | None = None,
        mode: str | None = None,
        concept: str | None = None,
        seed: int | None = None,
    ) -> SteeringPlayground:
        """Set controls as a user would (None keeps one). ``concept=""`` runs without the probe;
        a strength beyond the slider's range widens the range."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if concept and concept not in self.steerer.concepts:
            raise ValueError(f"Unknown concept {concept!r}; the probe knows {list(self.steerer.concepts)}")
        # A feature selects itself in the list and sets its concept, so an explicit concept comes after.
        set_given((self.prompt_input, prompt), (self.feature_input, feature))
        if strength is not None and math.isfinite(strength):
            slider = self.strength_slider
            slider.min, slider.max = min(slider.min, strength), max(slider.max, strength)
        set_given((self.strength_slider, strength), (self.mode_toggle, mode), (self.concept_select, concept),
                  (self.seed_input, seed))  # fmt: skip
        return self

    # -- generating --------------------------------------------------------------------

    def _set_status(self, text: str, kind: str = "") -> None:
        self.status.value = f"<span class='saelab-steer-status {kind}'>{html.escape(text)}</span>"

    def generate(self) -> Outcome | None:
        """Run the steerer with the controls' values and show the result (what Generate does).

        Returns the outcome, also appended to :attr:`history`; on bad input (ValueError or
        TypeError from the steerer) shows the message in the status line, sets :attr:`error`
        and returns None. Any other failure shows too, then propagates.
        """
        s = self.settings
        self._set_status("generating…", "busy")
        self.generate_button.disabled = True
        start = time.perf_counter()
        try:
            outcome = self.steerer.run(
                s.prompt, s.feature, s.strength, mode=s.mode, unit=s.unit, concept=s.concept, seed=s.seed
            )
        except (ValueError, TypeError) as err:
            self.error = str(err)
            self._set_status(f"error: {err}", "error")
            return None
        except Exception as err:
            self.error = f"{type(err).__name__}: {err}"
            self._set_status(f"failed: {self.error}", "error")
            raise
        finally:
            self.generate_button.disabled = False
        self.error, self.outcome = None, outcome
        self.history.append(outcome)
        self.comparison.value = comparison_html(outcome)
        self.history_view.value = history_html(self.history)
        self._set_status(f"run {len(self.history)} generated in {time.perf_counter() - start:.1f} s")
        return outcome

    def history_frame(self) -> pd.DataFrame:
        """Every run so far, oldest first (columns :data:`HISTORY_FIELDS`)."""
        return history_frame(self.history)

    # -- output ------------------------------------------------------------------------

    def to_html(self, path: str | Path) -> Path:
        """Save the current comparison and the history as one static page (no scripts, no network)."""
        if self.outcome is None:
            raise ValueError("nothing to export yet: generate a continuation first")
        return write_page(path, page_html(self.outcome, self.history))
