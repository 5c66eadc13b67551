"""From a finished pass and the computed parts to each feature's :class:`FeatureDashboard`.

The top windows are the pass's top selection. The quantile groups come from its uniform
sample of activating windows: ordered by peak, split into equal-count bins, a few windows
shown per bin (evenly spaced within it), the top windows left out so nothing shows twice.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from transformer_lens import HookedTransformer

from saelab.autointerp.assemble import ContextMaker, Entry
from saelab.autointerp.pass_state import PassState
from saelab.autointerp.sources import ActivationSource
from saelab.dashboards.accumulators import ActivationHistogram, Coactivation
from saelab.dashboards.config import DashboardConfig
from saelab.dashboards.data import (
    ExplanationScore,
    FeatureDashboard,
    Match,
    Neighbour,
    QuantileGroup,
    SpecialistHit,
)
from saelab.dashboards.parts import LogitParts


class FeatureParts(NamedTuple):
    """The parts computed for all features at once, by feature (lists in ``selected`` order)."""

    logits: LogitParts
    neighbours: list[tuple[Neighbour, ...]]
    explanations: dict[int, tuple[ExplanationScore, ...]]
    specialists: dict[int, tuple[SpecialistHit, ...]]
    matches: dict[int, tuple[Match, ...]]
    points: dict[int, tuple[float, float]]


def assemble_features(state: PassState, source: ActivationSource, model: HookedTransformer, selected: list[int],
                      cfg: DashboardConfig, histogram: ActivationHistogram, coact: Coactivation,
                      parts: FeatureParts) -> dict[int, FeatureDashboard]:  # fmt: skip
    maker = ContextMaker(state, source, model)
    fired = state.fired_S.cpu().tolist()
    tops, samples = state.selections["top"].all_entries(), state.selections["activating"].all_entries()
    out = {}
    for j, feature in enumerate(selected):
        top = [Entry(*e) for e in tops[j]]
        sample = [Entry(*e) for e in samples[j]]
        n_fired = int(fired[j])
        peak = round(max((e.value for e in top), default=0.0), 5)
        strongest = [e.value for e in top[: cfg.steering_top]]
        out[feature] = FeatureDashboard(
            feature=feature,
            density=n_fired / max(1, state.n_tokens),
            n_fired=n_fired,
            max_activation=peak,
            mean_activation=round(float(histogram.sum_S[j]) / n_fired, 5) if n_fired else 0.0,
            steering_unit=round(float(np.mean(strongest)), 5) if strongest else 0.0,
            top=maker.contexts(top),
            quantiles=_groups(sample, {e.window for e in top}, cfg, maker),
            histogram=histogram.histogram(j, peak, cfg.n_histogram_bins),
            logit_histogram=parts.logits.histograms[j],
            promoted=parts.logits.promoted[j],
            suppressed=parts.logits.suppressed[j],
            decoder_neighbours=parts.neighbours[j],
            coactivating=tuple(Neighbour(f, round(jac, 5), round(share, 5)) for f, jac, share in
                               coact.top(j, cfg.n_neighbours)),  # fmt: skip
            explanations=parts.explanations.get(feature, ()),
            specialist=parts.specialists.get(feature, ()),
            matches=parts.matches.get(feature, ()),
            map_xy=parts.points.get(feature),
        )
    return out


def _groups(sample: list[Entry], shown: set[int], cfg: DashboardConfig,
            maker: ContextMaker) -> tuple[QuantileGroup, ...]:  # fmt: skip
    """No groups when every sampled window is already a top window (a rare feature): they
    would only repeat the top activations."""
    if all(e.window in shown for e in sample):
        return ()
    ordered = sorted(sample, key=lambda e: e.value)
    bins = np.array_split(np.arange(len(ordered)), min(cfg.n_quantile_groups, len(ordered)))
    groups = []
    for b in reversed(bins):  # strongest group first, as the top windows above it
        members = [ordered[i] for i in b]
        fresh = [e for e in members if e.window not in shown]
        picks = [fresh[int(i)] for i in np.unique(np.linspace(0, len(fresh) - 1, min(cfg.per_group, len(fresh)))
                                                  .round().astype(int))] if fresh else []  # fmt: skip
        groups.append(QuantileGroup(round(members[0].value, 5), round(members[-1].value, 5),
                                    round(len(members) / len(ordered), 5),
                                    maker.contexts(sorted(picks, key=lambda e: -e.value))))  # fmt: skip
    return tuple(groups)
