"""The steering playground's view: the baseline and steered continuations side by side with
their concept probability, perplexity and relevance, the history of runs, and the static page.
Pure functions of the runs' outcomes (every text escaped); the styles live in ``playground.css``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pandas as pd

from saelab.viz.style import short_label

CSS = Path(__file__).with_name("playground.css").read_text(encoding="utf-8")
"""The styles of the comparison, the history and the status line (``playground.css``)."""
HISTORY_FIELDS = (
    "prompt", "feature", "mode", "strength", "unit", "seed", "concept",
    "concept_baseline", "concept_steered", "perplexity_baseline", "perplexity_steered",
    "relevance_baseline", "relevance_steered", "distinct2_baseline", "distinct2_steered", "baseline", "steered",
)  # fmt: skip
"""The columns of :meth:`SteeringPlayground.history_frame`: one run's settings and numbers."""


class Outcome(Protocol):
    """What the playground reads from one run (:class:`saelab.interventions.SteeringOutcome`)."""

    @property
    def prompt(self) -> str: ...
    @property
    def feature(self) -> int: ...
    @property
    def strength(self) -> float: ...
    @property
    def unit(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def baseline(self) -> str: ...
    @property
    def steered(self) -> str: ...
    @property
    def concept(self) -> str | None: ...
    @property
    def concept_baseline(self) -> float | None: ...
    @property
    def concept_steered(self) -> float | None: ...
    @property
    def perplexity_baseline(self) -> float: ...
    @property
    def perplexity_steered(self) -> float: ...
    @property
    def relevance_baseline(self) -> float: ...
    @property
    def relevance_steered(self) -> float: ...
    @property
    def distinct2_baseline(self) -> float: ...
    @property
    def distinct2_steered(self) -> float: ...


# -- rendering (pure functions of the outcomes) ------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _prob(p: float | None) -> str:
    return "—" if p is None else f"{p:.1%}"


def strength_text(strength: float, unit: str) -> str:
    """``4 × typical max`` or ``4 (raw)``."""
    return f"{strength:g} × typical max" if unit == "max" else f"{strength:g} (raw)"


def _settings_html(o: Outcome) -> str:
    concept = "no concept probe" if o.concept is None else f"concept: {_esc(o.concept)}"
    return (
        f"<p class='saelab-steer-settings'>feature #{int(o.feature)} · {_esc(o.mode)} "
        f"{_esc(strength_text(o.strength, o.unit))} · seed {int(o.seed)} · {concept}</p>"
    )


def _column(o: Outcome, side: str) -> str:
    """One side's continuation (escaped) and its three numbers."""
    text = o.baseline if side == "baseline" else o.steered
    shown = _esc(text) if text else "<span class='saelab-steer-empty'>(no tokens generated)</span>"
    prob = o.concept_baseline if side == "baseline" else o.concept_steered
    ppl = o.perplexity_baseline if side == "baseline" else o.perplexity_steered
    rel = o.relevance_baseline if side == "baseline" else o.relevance_steered
    distinct = o.distinct2_baseline if side == "baseline" else o.distinct2_steered
    probe = f"P({_esc(o.concept)})" if o.concept is not None else "P(concept)"
    title = "baseline (unsteered)" if side == "baseline" else f"steered: #{int(o.feature)} {_esc(o.mode)}"
    rows = (
        f"<tr><td>{probe}</td><td class='num' data-metric='concept'>{_prob(prob)}</td></tr>"
        f"<tr><td>perplexity</td><td class='num' data-metric='perplexity'>{ppl:.3g}</td></tr>"
        f"<tr><td>relevance (nats/token)</td><td class='num' data-metric='relevance'>{rel:+.3f}</td></tr>"
        f"<tr><td>distinct-2 (1 = no repeated pair)</td>"
        f"<td class='num' data-metric='distinct2'>{distinct:.2f}</td></tr>"
    )
    return (
        f"<div class='saelab-steer-col' data-side='{side}'><h4>{title}</h4>"
        f"<div class='saelab-steer-text'>{shown}</div><table>{rows}</table></div>"
    )


def _differences(o: Outcome) -> str:
    parts = []
    if o.concept is not None and o.concept_baseline is not None and o.concept_steered is not None:
        gain = 100 * (o.concept_steered - o.concept_baseline)
        parts.append(f"P({_esc(o.concept)}) {gain:+.1f} pp")
    ratio = o.perplexity_steered / o.perplexity_baseline if o.perplexity_baseline > 0 else math.nan
    parts.append(f"perplexity ×{ratio:.2f}")
    parts.append(f"relevance {o.relevance_steered - o.relevance_baseline:+.3f} nats/token")
    if o.distinct2_baseline > 0:
        ratio = o.distinct2_steered / o.distinct2_baseline
        flag = " (degenerate: repeats itself)" if ratio < 0.5 else ""
        parts.append(f"distinct-2 ×{ratio:.2f}{flag}")
    return "<p class='saelab-steer-diff'>steered − baseline: " + " · ".join(parts) + "</p>"


def comparison_html(outcome: Outcome) -> str:
    """Settings, the prompt, and the baseline and steered continuations side by side with their
    concept probability, perplexity and relevance, then the differences. Every text is escaped."""
    return (
        f"<div class='saelab-steer'>{_settings_html(outcome)}"
        f"<div class='saelab-steer-prompt'><b>prompt</b> "
        f"<span class='saelab-steer-text'>{_esc(outcome.prompt)}</span></div>"
        f"<div class='saelab-steer-cols'>{_column(outcome, 'baseline')}{_column(outcome, 'steered')}</div>"
        f"{_differences(outcome)}</div>"
    )


def history_frame(history: Sequence[Outcome]) -> pd.DataFrame:
    """One row per run, oldest first, with the columns :data:`HISTORY_FIELDS`."""
    return pd.DataFrame([{f: getattr(o, f) for f in HISTORY_FIELDS} for o in history], columns=list(HISTORY_FIELDS))


NUM = " class='num'"


def history_html(history: Sequence[Outcome]) -> str:
    """The runs so far as a table, newest first (empty string when there are none)."""
    if not history:
        return ""
    head = "".join(
        f"<th{NUM if n else ''}>{h}</th>"
        for h, n in [("run", 1), ("prompt", 0), ("feature", 1), ("mode", 0), ("strength", 1), ("seed", 1),
                     ("concept", 0), ("P base → steered", 1), ("perplexity", 1), ("relevance", 1), ("steered", 0)]
    )  # fmt: skip
    rows = []
    for run, o in reversed(list(enumerate(history, 1))):
        cells = [
            (run, 1), (short_label(o.prompt, 32), 0), (f"#{int(o.feature)}", 1), (o.mode, 0),
            (strength_text(o.strength, o.unit), 1), (o.seed, 1), (o.concept or "—", 0),
            (f"{_prob(o.concept_baseline)} → {_prob(o.concept_steered)}", 1),
            (f"{o.perplexity_baseline:.3g} → {o.perplexity_steered:.3g}", 1),
            (f"{o.relevance_baseline:+.2f} → {o.relevance_steered:+.2f}", 1), (short_label(o.steered, 48), 0),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td{NUM if n else ''}>{_esc(v)}</td>" for v, n in cells) + "</tr>")
    runs = f"{len(history)} run" + ("s" if len(history) != 1 else "")
    return (
        f"<div class='saelab-steer saelab-steer-history'><h4>history ({runs}, newest first)</h4>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def page_html(outcome: Outcome, history: Sequence[Outcome]) -> str:
    """A standalone page of ``outcome``'s comparison and the history: inline CSS, no scripts."""
    title = _esc(f"Steering · feature #{int(outcome.feature)} · {strength_text(outcome.strength, outcome.unit)}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<div class='saelab-steer' style='max-width: 1100px; margin: 0 auto'><h3>{title}</h3>\n"
        f"{comparison_html(outcome)}{history_html(history)}</div>\n</body>\n</html>\n"
    )
