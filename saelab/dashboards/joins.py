"""What other analyses found about each feature, joined into its dashboard where they exist:
explanations with their scores and shuffled controls (autointerp records), category
specialists (a :func:`saelab.specialists` table), the best match at each other hook of the
profile (:func:`saelab.evolution.match_features`, by decoder direction) and the feature map.

Every join returns, per feature, a tuple that is empty when there is nothing to join: a
dashboard's fields are then empty, never missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sae_lens import SAE

from saelab.autointerp.summary import metrics_of
from saelab.dashboards.data import ExplanationScore, Match, SpecialistHit
from saelab.evolution.maps import MapConfig, feature_map
from saelab.evolution.matching import match_features

RECORD_COLUMNS = {"feature", "explainer", "explanation"}
SPECIALIST_COLUMNS = {"category", "feature", "auroc", "q_value", "is_specialist"}
DASHBOARD_MAP = MapConfig(n_clusters=20)
"""Notebook 02's map (UMAP, and 20 clusters it colours by): the same config shares its cache."""


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float | np.floating) and math.isfinite(float(value)) else None


def explanations_by_feature(records: pd.DataFrame | None, d_sae: int,
                            decomposition: str = "sae") -> dict[int, tuple[ExplanationScore, ...]]:  # fmt: skip
    """From :func:`saelab.autointerp.run.records_frame` rows: each feature's explanations, one
    per explainer, with every scored metric beside its shuffled control (unscored: left out)."""
    if records is None or records.empty:
        return {}
    missing = RECORD_COLUMNS - set(records.columns)
    if missing:
        raise ValueError(f"explanation records lack the columns {sorted(missing)}; pass "
                         "saelab.autointerp.run_autointerp(...)'s frame (or records_frame(path))")  # fmt: skip
    ours = pd.DataFrame(records[records["decomposition"] == decomposition]) if "decomposition" in records else records
    _check_ids(pd.Series(ours["feature"]), d_sae, "explanation records")
    metrics = metrics_of(ours)
    out: dict[int, list[ExplanationScore]] = {}
    for row in ours.to_dict("records"):
        if row.get("skipped") is True or not str(row["explanation"]).strip():
            continue
        scores = {m: v for m in metrics if (v := _finite(row.get(f"score_{m}"))) is not None}
        shuffled = {m: v for m in metrics if (v := _finite(row.get(f"shuffled_{m}"))) is not None}
        out.setdefault(int(row["feature"]), []).append(
            ExplanationScore(str(row["explainer"]), str(row["explanation"]), scores, shuffled)
        )
    return {f: tuple(e) for f, e in out.items()}


def specialists_by_feature(table: pd.DataFrame | None, d_sae: int) -> dict[int, tuple[SpecialistHit, ...]]:
    """From a :func:`saelab.specialists` table: each feature's categories, best AUROC first."""
    if table is None or table.empty:
        return {}
    missing = SPECIALIST_COLUMNS - set(table.columns)
    if missing:
        raise ValueError(f"the specialists table lacks the columns {sorted(missing)}; pass saelab.specialists(...)")
    _check_ids(pd.Series(table["feature"]), d_sae, "specialists table")
    out: dict[int, list[SpecialistHit]] = {}
    for row in table.sort_values("auroc", ascending=False, kind="mergesort").to_dict("records"):
        out.setdefault(int(row["feature"]), []).append(
            SpecialistHit(str(row["category"]), float(row["auroc"]), float(row["q_value"]), bool(row["is_specialist"]))
        )
    return {f: tuple(h) for f, h in out.items()}


def matches_by_feature(sae: SAE, others: Mapping[str, SAE], features: list[int]) -> dict[int, tuple[Match, ...]]:
    """Each feature's best decoder match at every other hook, flagged good when above the
    matching's null threshold (a 99% quantile of a covariance-matched null)."""
    out: dict[int, list[Match]] = {f: [] for f in features}
    for hook, other in others.items():
        if int(other.cfg.d_in) != int(sae.cfg.d_in):
            raise ValueError(f"the SAE at {hook} reads width {other.cfg.d_in}, this one {sae.cfg.d_in}: "
                             "matches need SAEs of one model")  # fmt: skip
        best = match_features(sae, other, method="decoder", top=1).best
        for f in features:
            row = best.loc[f]
            out[f].append(Match(hook, int(row["best_match"]), round(float(row["similarity"]), 5), bool(row["matched"])))
    return {f: tuple(m) for f, m in out.items()}


def map_points(sae: SAE, features: list[int], config: MapConfig | None = None) -> tuple[dict[int, tuple[float, float]],
                                                                                        str]:  # fmt: skip
    """Each feature's place on the feature map of the whole SAE (cached by
    :func:`saelab.evolution.feature_map`), and the method that made it."""
    made = feature_map(sae, config or DASHBOARD_MAP)
    wanted = set(features)
    ids, xs, ys = (made.points[c].to_numpy() for c in ("feature", "x", "y"))
    return ({int(f): (round(float(x), 4), round(float(y), 4)) for f, x, y in zip(ids, xs, ys, strict=True)
             if int(f) in wanted}, made.method)  # fmt: skip


def _check_ids(ids: pd.Series, d_sae: int, what: str) -> None:
    values = ids.to_numpy()
    bad = values[(values < 0) | (values >= d_sae)] if len(values) else values
    if len(bad):
        raise ValueError(f"the {what} name feature ids outside [0, {d_sae}) (e.g. {int(bad[0])}): "
                         "they come from another SAE")  # fmt: skip
