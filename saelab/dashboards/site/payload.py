"""What each page of the site reads, as plain JSON-ready dicts: the list of SAEs (landing page),
one SAE's index (its table and map), and a feature's record (its page).

Numbers are cut to 3 significant digits (4 for summary metrics and histogram edges): the pages
show no more, and every digit dropped is bytes saved across 4,608 features. A window is
``[window index, position, value, position, value, ...]`` with only the non-zero activations,
each value in units of ``10**exponent`` (the feature's ``exponent``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from itertools import chain
from typing import Any

import numpy as np

from saelab.autointerp.feature_examples import Context
from saelab.dashboards.data import FeatureDashboard, SaeDashboard, TokenValue
from saelab.dashboards.site.encode import histogram, sig, sig_list
from saelab.dashboards.site.windows import SHARD_WINDOWS, WindowStore

BATCH_FEATURES = 128
"""Features per data file: ~150-250 KB of script, a few files per SAE instead of one per feature."""

METRICS = ("l0", "explained_variance", "ce_loss_recovered", "dead_fraction", "dense_fraction")
"""Summary metrics every SAE shows (None: not measured); any other scalar in the summary follows."""


def plain(value: Any, digits: int = 4) -> Any:
    """``value`` as JSON: numbers to ``digits`` significant digits, a non-finite one as its name
    ("nan", "inf"), tuples as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return sig(value, digits) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): plain(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, digits) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item(), digits)
    return str(value)


def metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's scalar metrics, the standard ones first (None where not measured)."""
    out: dict[str, Any] = {name: plain(summary.get(name)) for name in METRICS}
    for name, value in summary.items():
        if name not in out and (value is None or isinstance(value, int | float) or hasattr(value, "item")):
            out[name] = plain(value)
    return out


def sae_entry(key: str, dash: SaeDashboard) -> dict[str, Any]:
    """One SAE on the landing page."""
    specialists = [row for row in dash.summary.get("specialists") or () if row.get("is_specialist", True)]
    return {
        "key": key,
        "info": plain(asdict(dash.info)),
        "n_features": len(dash.features),
        "metrics": metrics(dash.summary),
        "explanation_scores": plain(list(dash.summary.get("explanation_scores") or ())),
        "n_specialists": len({row.get("feature") for row in specialists}),
        "specialist_categories": sorted({str(row.get("category")) for row in specialists}),
        "map_method": dash.map_method,
    }


def score_metric(dash: SaeDashboard) -> str | None:
    """The metric the index's score column shows (the first explanation's first, as ``frame``)."""
    for feature in dash.features.values():
        if feature.explanations and feature.explanations[0].scores:
            return next(iter(feature.explanations[0].scores))
    return None


def sae_index(key: str, dash: SaeDashboard) -> dict[str, Any]:
    """An SAE's table (every feature, by increasing id) and map, as columns."""
    ids = sorted(dash.features)
    frame = dash.frame().set_index("feature").loc[ids] if ids else None
    features = [dash.features[i] for i in ids]

    def column(name: str, digits: int = 3) -> list[Any]:
        if frame is None:
            return []
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else sig(v, digits)
                for v in frame[name].tolist()]  # fmt: skip

    xy = [f.map_xy for f in features]
    return {
        **sae_entry(key, dash),
        "config": dash.config.to_dict(),
        "score_metric": score_metric(dash),
        "batch": BATCH_FEATURES,
        "shard": SHARD_WINDOWS,
        "ids": ids,
        "density": column("density"),
        "max": column("max_activation"),
        "n_fired": [f.n_fired for f in features],
        "tokens": [list(t) for t in frame["top_tokens"]] if frame is not None else [],
        "explanation": [str(t) for t in frame["explanation"]] if frame is not None else [],
        "score": column("score"),
        "shuffled": column("shuffled_score"),
        "category": [str(c) for c in frame["category"]] if frame is not None else [],
        "x": [None if p is None else sig(p[0], 4) for p in xy],
        "y": [None if p is None else sig(p[1], 4) for p in xy],
    }


def _windows(contexts: Sequence[Context], windows: WindowStore) -> tuple[int, list[list[int | float]]]:
    """Each context as ``[window index, position, value, ...]`` over its non-zero activations,
    the values to 3 significant digits in units of ``10**exponent``, the exponent chosen so the
    largest is 100-999: "437" instead of "4.37" saves 4% of a feature once gzipped."""
    if not contexts:
        return 0, []
    lengths = np.array([len(c.acts) for c in contexts])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    acts = np.fromiter(chain.from_iterable(c.acts for c in contexts), dtype=np.float64, count=int(starts[-1]))
    nonzero = np.flatnonzero(acts)
    peak = float(np.abs(acts[nonzero]).max()) if nonzero.size and np.isfinite(acts).all() else 1.0
    exponent = math.floor(math.log10(peak)) - 2
    values = [int(v) if v.is_integer() else v for v in sig_list(acts[nonzero] / 10.0**exponent)]
    owner = np.searchsorted(starts, nonzero, side="right") - 1
    positions = (nonzero - starts[owner]).tolist()
    out: list[list[int | float]] = [[windows.add(c)] for c in contexts]
    for w, position, value in zip(owner.tolist(), positions, values, strict=True):
        out[w] += (position, value)
    return exponent, out


def _rounded(*groups: Sequence[float]) -> list[list[float]]:
    """Each group of values to 3 significant digits, rounded in one call (a call per value took
    a tenth of an SAE's write time)."""
    flat = sig_list(np.fromiter(chain.from_iterable(groups), dtype=np.float64))
    out, at = [], 0
    for group in groups:
        out.append(flat[at : at + len(group)])
        at += len(group)
    return out


def _logit_rows(tokens: Sequence[TokenValue], values: list[float], windows: WindowStore) -> list[list[Any]]:
    """``[token id, value]``, the token's string added where it differs from the vocabulary's."""
    rows: list[list[Any]] = []
    for t, value in zip(tokens, values, strict=True):
        odd = windows.token(t.token_id, t.token)
        rows.append([t.token_id, value] if odd is None else [t.token_id, value, odd])
    return rows


def feature_record(f: FeatureDashboard, windows: WindowStore) -> dict[str, Any]:
    """A feature's page, its windows stored in ``windows`` and referred to by index."""
    try:
        exponent, shown = _windows([*f.top, *(c for q in f.quantiles for c in q.examples)], windows)
        top, rest = shown[: len(f.top)], shown[len(f.top) :]
        groups, taken = [], 0
        for q in f.quantiles:
            groups.append(rest[taken : taken + len(q.examples)])
            taken += len(q.examples)
        head, bounds, up, down, decoder, coact, share, spec, sim = _rounded(
            (f.density, f.max_activation, f.mean_activation, f.steering_unit),
            [x for q in f.quantiles for x in (q.low, q.high, q.share)],
            [t.value for t in f.promoted], [t.value for t in f.suppressed],
            [n.value for n in f.decoder_neighbours], [n.value for n in f.coactivating],
            [0.0 if n.share is None else n.share for n in f.coactivating],
            [x for s in f.specialist for x in (s.auroc, s.q_value)], [m.similarity for m in f.matches],
        )  # fmt: skip
        return {
            "f": f.feature, "density": head[0], "n_fired": f.n_fired, "max": head[1], "mean": head[2], "unit": head[3],
            "exponent": exponent, "top": top,
            "quantiles": [[*bounds[3 * k : 3 * k + 3], groups[k]] for k in range(len(f.quantiles))],
            "hist": histogram(f.histogram.edges, f.histogram.counts),
            "logit_hist": histogram(f.logit_histogram.edges, f.logit_histogram.counts),
            "promoted": _logit_rows(f.promoted, up, windows),
            "suppressed": _logit_rows(f.suppressed, down, windows),
            "decoder": [[n.feature, v] for n, v in zip(f.decoder_neighbours, decoder, strict=True)],
            "coact": [[n.feature, v, None if n.share is None else s]
                      for n, v, s in zip(f.coactivating, coact, share, strict=True)],
            "explanations": [[e.explainer, e.text, plain(e.scores, 3), plain(e.shuffled, 3)] for e in f.explanations],
            "specialist": [[s.category, *spec[2 * k : 2 * k + 2], s.is_specialist] for k, s in enumerate(f.specialist)],
            "matches": [[m.hook, m.feature, v, m.good] for m, v in zip(f.matches, sim, strict=True)],
        }  # fmt: skip
    except ValueError as err:
        raise ValueError(f"feature {f.feature}: {err}") from None
