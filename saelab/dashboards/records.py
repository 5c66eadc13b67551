"""A dashboard as report records: one feature record per feature, one activation record per
window and one explanation record per explanation, in Neuronpedia's names
(:mod:`saelab.dashboards.schema` says which and why).

Floats in lists (activations, logit effects, histograms, cosines, co-activation) keep 3
significant digits: the activation values are most of a report's bytes, and a dashboard shows
2 or 3 digits. Histogram edges keep 4, so neighbouring edges of a 40-bar histogram stay apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from saelab.autointerp.feature_examples import Context
from saelab.dashboards.data import FeatureDashboard, Histogram, Neighbour, SaeDashboard, SaeInfo
from saelab.dashboards.schema import CREATOR_ID, NeuronpediaSource

DIGITS = 3
EDGE_DIGITS = 4
# Neuronpedia's source-set names for TransformerLens hook points (gpt2-small's res-jb SAEs sit
# at hook_resid_pre and are "<layer>-res-jb"); other hook points keep their own name.
HOOK_KINDS = {"hook_resid_pre": "res", "hook_resid_mid": "res_mid", "hook_resid_post": "res_post",
              "hook_mlp_out": "mlp", "hook_attn_out": "att", "attn.hook_z": "att"}  # fmt: skip


def round_sig(values: Sequence[float] | np.ndarray, digits: int = DIGITS) -> list[float]:
    """``values`` rounded to ``digits`` significant digits, as Python floats whose shortest
    repr is those digits (an integer over an exact power of ten, divided once)."""
    x = np.asarray(values, dtype=np.float64)
    out = x.copy()
    nonzero = np.isfinite(x) & (x != 0)
    if nonzero.any():
        v = x[nonzero]
        exponent = digits - 1 - np.floor(np.log10(np.abs(v)))
        scale = 10.0 ** np.abs(exponent)
        out[nonzero] = np.where(exponent >= 0, np.round(v * scale) / scale, np.round(v / scale) * scale)
    return out.tolist()


def neuronpedia_source(info: SaeInfo) -> NeuronpediaSource:
    """The SAE's Neuronpedia model and source id: its published id where it has one (those are
    not always the hook's layer), else ``<layer>-<kind>-saelab`` from the hook."""
    if info.neuronpedia_id:
        model_id, _, source = info.neuronpedia_id.partition("/")
        return NeuronpediaSource(modelId=model_id, layer=source, sourceSetName=source.partition("-")[2] or source)
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", info.hook)
    layer, point = (match[1], match[2]) if match else ("0", info.hook)
    kind = HOOK_KINDS.get(point) or re.sub(r"[^a-z0-9]+", "_", point.lower()).strip("_")
    return NeuronpediaSource(modelId=info.model, layer=f"{layer}-{kind}-saelab", sourceSetName=f"{kind}-saelab")


def record_id(src: NeuronpediaSource, feature: int, kind: str, group: int, rank: int) -> str:
    """An id fixed by the record's place, so the same dashboard gives the same bytes. Neuronpedia
    checks ids as cuids (``c`` then 8+ characters, no ``-``); a digest of the source keeps them
    unique across sources, and the readable rest compresses better than random characters."""
    source = hashlib.sha1(f"{src.modelId}/{src.layer}".encode()).hexdigest()[:12]
    return f"c{source}_{feature}_{kind}{group + 1}_{rank}"


def _centres(hist: Histogram) -> list[float]:
    """Bar centres, as Neuronpedia's ``*_bar_values`` hold them."""
    if not hist.counts:
        return []
    edges = np.asarray(hist.edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    # A centre that is zero up to rounding error (symmetric edges give 1e-16) is zero.
    centres[np.abs(centres) < 1e-9 * np.abs(edges).max()] = 0.0
    return round_sig(centres)


def _rounded_neighbours(neighbours: Sequence[Neighbour]) -> list[Neighbour]:
    """Co-activation values and shares at 3 digits (a quarter of a feature record's bytes at full precision)."""
    values = round_sig([n.value for n in neighbours])
    shares = round_sig([n.share if n.share is not None else 0.0 for n in neighbours])
    return [Neighbour(n.feature, v, s if n.share is not None else None)
            for n, v, s in zip(neighbours, values, shares, strict=True)]  # fmt: skip


def feature_record(f: FeatureDashboard, src: NeuronpediaSource, map_method: str | None) -> dict:
    """The feature's ``Neuron`` row and its saelab block."""
    best = max(f.specialist, key=lambda s: s.auroc, default=None)
    first = f.explanations[0] if f.explanations else None
    metric = next(iter(first.scores), None) if first else None
    umap = f.map_xy if map_method == "umap" and f.map_xy is not None else (None, None)
    return {
        "modelId": src.modelId, "layer": src.layer, "index": str(f.feature), "creatorId": CREATOR_ID,
        "sourceSetName": src.sourceSetName, "maxActApprox": float(f.max_activation), "frac_nonzero": float(f.density),
        "hasVector": False, "vector": [], "vectorLabel": None, "vectorDefaultSteerStrength": None, "hookName": None,
        "topkCosSimIndices": [n.feature for n in f.decoder_neighbours],
        "topkCosSimValues": round_sig([n.value for n in f.decoder_neighbours]),
        **{name: [] for name in ("neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
                                 "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
                                 "correlated_features_indices", "correlated_features_pearson",
                                 "correlated_features_l1", "decoder_weights_dist")},
        "neg_str": [t.token for t in f.suppressed], "neg_values": round_sig([t.value for t in f.suppressed]),
        "pos_str": [t.token for t in f.promoted], "pos_values": round_sig([t.value for t in f.promoted]),
        "freq_hist_data_bar_heights": [float(c) for c in f.histogram.counts],
        "freq_hist_data_bar_values": _centres(f.histogram),
        "logits_hist_data_bar_heights": [float(c) for c in f.logit_histogram.counts],
        "logits_hist_data_bar_values": _centres(f.logit_histogram),
        "umap_x": umap[0], "umap_y": umap[1], "umap_cluster": None, "umap_log_feature_sparsity": None,
        "saelab": {
            "n_fired": f.n_fired, "mean_activation": float(f.mean_activation),
            "steering_unit": float(f.steering_unit), "top_tokens": f.peak_tokens(),
            "explanation": first.text if first else "",
            "score": first.scores[metric] if first and metric else None,
            "shuffled_score": first.shuffled.get(metric) if first and metric else None,
            "category": best.category if best and best.is_specialist else "",
            "pos_token_ids": [t.token_id for t in f.promoted], "neg_token_ids": [t.token_id for t in f.suppressed],
            "freq_hist_edges": round_sig(f.histogram.edges, EDGE_DIGITS),
            "logits_hist_edges": round_sig(f.logit_histogram.edges, EDGE_DIGITS),
            "coactivating": _rounded_neighbours(f.coactivating), "specialist": list(f.specialist),
            "matches": list(f.matches),
            "map_xy": list(f.map_xy) if f.map_xy is not None else None,
        },
    }  # fmt: skip


@dataclass(frozen=True)
class _Bin:
    group: int
    low: float
    high: float
    contains: float


def _windows(f: FeatureDashboard) -> Iterator[tuple[_Bin, int, Context]]:
    top = _Bin(-1, -1.0, float(f.max_activation), -1.0)
    yield from ((top, rank, ctx) for rank, ctx in enumerate(f.top))
    for g, q in enumerate(f.quantiles):
        group = _Bin(g, float(q.low), float(q.high), float(q.share))
        yield from ((group, rank, ctx) for rank, ctx in enumerate(q.examples))


def activation_records(f: FeatureDashboard, src: NeuronpediaSource) -> list[dict]:
    """One ``Activation`` row per window: the top windows, then each quantile group's."""
    windows = list(_windows(f))
    # One rounding pass over the feature's windows: per-window numpy calls cost more than the rounding.
    flat = round_sig(np.fromiter(chain.from_iterable(ctx.acts for _, _, ctx in windows), dtype=np.float64))
    rows, at = [], 0
    for group, rank, ctx in windows:
        values, at = flat[at : at + len(ctx.acts)], at + len(ctx.acts)
        peak = max(values, default=0.0)
        rows.append({
            "id": record_id(src, f.feature, "a", group.group, rank), "modelId": src.modelId, "layer": src.layer,
            "index": str(f.feature), "creatorId": CREATOR_ID, "dataSource": None, "dataIndex": str(ctx.source[0]),
            "tokens": list(ctx.tokens), "values": values, "maxValue": peak,
            "maxValueTokenIndex": values.index(peak) if values else 0, "minValue": min(values, default=0.0),
            "dfaValues": [], "dfaMaxValue": None, "dfaTargetIndex": None,
            "binMin": group.low, "binMax": group.high, "binContains": group.contains,
            "saelab": {"group": group.group, "rank": rank, "sequence": int(ctx.source[0]),
                       "start": int(ctx.source[1])},
        })  # fmt: skip
    return rows


def explanation_records(f: FeatureDashboard, src: NeuronpediaSource) -> list[dict]:
    """One ``Explanation`` row per explainer's explanation, its scores beside their controls."""
    return [
        {
            "id": record_id(src, f.feature, "e", 0, rank), "modelId": src.modelId, "layer": src.layer,
            "index": str(f.feature), "authorId": CREATOR_ID, "description": e.text, "embedding": None,
            "typeName": None, "explanationModelName": None,
            "umap_x": None, "umap_y": None, "umap_cluster": None, "umap_log_feature_sparsity": None,
            "saelab": {"explainer": e.explainer, "rank": rank, "scores": {k: float(v) for k, v in e.scores.items()},
                       "shuffled": {k: float(v) for k, v in e.shuffled.items()}},
        }
        for rank, e in enumerate(f.explanations)
    ]  # fmt: skip


def batch_records(dashboard: SaeDashboard, features: Sequence[int]) -> dict[str, list[dict]]:
    """The three kinds of records of ``features`` (one batch), features in index order."""
    src = neuronpedia_source(dashboard.info)
    out: dict[str, list[dict]] = {"features": [], "activations": [], "explanations": []}
    for index in features:
        f = dashboard.features[index]
        out["features"].append(feature_record(f, src, dashboard.map_method))
        out["activations"] += activation_records(f, src)
        out["explanations"] += explanation_records(f, src)
    return out
