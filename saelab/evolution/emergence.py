"""When the features of a trained SAE emerge during its training.

* :func:`feature_emergence`: snapshots of the dictionary during training
  (:func:`saelab.train.load_snapshots`) against the final SAE. For every final feature and
  every snapshot, the decoder cosine of its best match among the snapshot's features, and
  whether that passes the snapshot's null threshold (random directions with the covariance
  of the snapshot's own, :mod:`saelab.evolution.nulls`; never a number chosen by eye). A
  feature *appears* at the first snapshot where it passes (``first_step``) and is *stable*
  from the snapshot after which it never falls below again (``stable_step``). Units keep their
  index during training, so the cosine with the same unit is reported beside the best match.
* :func:`specialist_emergence`: each category's final specialist feature, followed by unit
  index through the snapshots' pooled activations, with the house test of
  :func:`saelab.analysis.specialists` at every snapshot, and the first step at which it is a
  significant specialist.

Read a feature that "appears" at step 0 with care: a unit that training barely moved (a dead
one, say) still points where it was initialised, so it matches its own initial direction.
The same-unit cosine at step 0 tells these apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jaxtyping import Bool

from saelab.analysis._checks import as_numpy, check_feature_ids, check_unit
from saelab.analysis.specialists import specialists
from saelab.evolution.matching import DecoderNull, decoder_similarities, matches_from
from saelab.evolution.similarity import decoder_directions

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled

DEFAULT_PERMUTATIONS = 10_000
"""Permutations per (category, feature) pair in :func:`specialist_emergence`: p-values down to
1e-4, ample for Benjamini-Hochberg over the handful of tracked features (the 100,000 that
:func:`saelab.analysis.specialists` uses are sized for thousands)."""


@dataclass
class Emergence:
    """When each feature of a final SAE appears among the snapshots of its training."""

    null_quantile: float
    long: pd.DataFrame
    """Tidy, one row per (final feature, snapshot step): ``feature, step, best_match,
    similarity`` (decoder cosine of the best match), ``same_unit_similarity``, ``threshold``
    (that snapshot's null threshold) and ``matched`` (similarity >= threshold)."""
    per_feature: pd.DataFrame
    """One row per final feature (index ``feature``): ``first_step`` (first snapshot where it
    is matched), ``stable_step`` (matched at this snapshot and every later one), nullable
    integers, <NA> when there is none; ``similarity_first`` (at the first snapshot)."""
    per_step: pd.DataFrame
    """One row per snapshot (index ``step``): ``threshold``, ``null_rate`` (share of final
    features whose best match under an independent null draw passes it), ``matched_share``
    (share matched at that snapshot), ``appeared_share`` (share whose ``first_step`` is at or
    before it), ``stable_share``, similarity ``median``, ``q25``, ``q75`` and ``same_unit_median``."""

    @property
    def steps(self) -> list[int]:
        return [int(s) for s in self.per_step.index]

    def summary(self) -> dict[str, Any]:
        per_step = self.per_step
        return {
            "n_features": len(self.per_feature), "steps": self.steps, "null_quantile": self.null_quantile,
            "matched_share_last": float(per_step["matched_share"].to_numpy()[-1]),
            "null_rate_max": float(per_step["null_rate"].to_numpy().max()),
            "never_matched_share": float(self.per_feature["first_step"].isna().to_numpy().mean()),
        }  # fmt: skip


def feature_emergence(
    snapshots: Mapping[int, Any] | Iterable[Any],
    final: Any,
    *,
    null_quantile: float = 0.99,
    seed: int = 0,
    null: DecoderNull = "gaussian",
) -> Emergence:
    """Match every snapshot's features to the ``final`` SAE's and say when each final feature appears.

    ``snapshots``: ``saelab.train.Snapshot`` objects (anything with ``step`` and ``sae`` or
    ``W_dec``), ``(step, sae)`` pairs, or a mapping ``{step: sae}``; an SAE may be any object with
    a ``W_dec`` or a ``[d_sae, d_in]`` decoder tensor. ``final``: the same, usually the SAE the
    snapshots' run ended with; a known dictionary (planted directions) works too, and then the
    same-unit cosine, defined only for equal numbers of features, is NaN.

    ``null`` (:func:`~saelab.evolution.decoder_similarities`): ``"gaussian"`` by default, random
    directions with the snapshot's own covariance, since early snapshots are near their random
    initialisation and a planted ``final`` may hold too few features to be its own reference;
    ``"dictionary"`` compares each final feature with the final's other features.
    """
    items = as_steps(snapshots)
    final_dirs = decoder_directions(final, "final")
    blocks, rows = [], []
    for step, snapshot in items:
        dirs = decoder_directions(getattr(snapshot, "sae", snapshot), f"the snapshot of step {step}")
        # A seed per step: each snapshot's null is its own draw, the same whatever else is passed.
        sims = decoder_similarities(final_dirs, dirs, seed=seed + 2 * step, null=null)
        matches = matches_from(sims, null_quantile=null_quantile, top=1)
        best = matches.best.reset_index()
        best.insert(1, "step", step)
        same = dirs.shape[0] == final_dirs.shape[0]
        best["same_unit_similarity"] = np.diagonal(sims.real).astype(np.float32) if same else np.nan
        best["threshold"] = matches.threshold
        blocks.append(best[["feature", "step", "best_match", "similarity", "same_unit_similarity", "threshold",
                            "matched"]])  # fmt: skip
        rows.append({"step": step, "threshold": matches.threshold, "null_rate": matches.null_rate})
    long = pd.concat(blocks, ignore_index=True)
    steps = [step for step, _ in items]
    matched = long["matched"].to_numpy().reshape(len(steps), -1)
    per_feature = _per_feature(matched, steps, long["similarity"].to_numpy().reshape(len(steps), -1))
    per_step = _per_step(long, pd.DataFrame(rows).set_index("step"), per_feature)
    return Emergence(null_quantile=null_quantile, long=long, per_feature=per_feature, per_step=per_step)


def as_steps(snapshots: Mapping[int, Any] | Iterable[Any], name: str = "snapshots") -> list[tuple[int, Any]]:
    """``(step, value)`` pairs sorted by step, from a mapping, pairs, or objects with ``step``."""
    if isinstance(snapshots, Mapping):
        items = list(snapshots.items())
    else:
        items = [item if isinstance(item, tuple) else (_step_of(item, name), item) for item in snapshots]
    if not items:
        raise ValueError(f"{name} is empty; pass at least one snapshot (saelab.train.load_snapshots)")
    bad = [s for s, _ in items if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0]
    if bad:
        raise ValueError(f"{name} steps must be integers >= 0, got {bad[:5]}")
    steps = [int(s) for s, _ in items]
    if len(set(steps)) != len(steps):
        raise ValueError(f"{name} holds a step more than once: {sorted(steps)}")
    return sorted(((int(s), v) for s, v in items), key=lambda pair: pair[0])


def _step_of(item: Any, name: str) -> Any:
    if not hasattr(item, "step"):
        raise TypeError(f"{name} must be a mapping {{step: sae}}, (step, sae) pairs or snapshots with a step; "
                        f"got a {type(item).__name__}")  # fmt: skip
    return item.step


def first_and_stable(flags: Bool[np.ndarray, "n_steps n"], steps: Sequence[int]) -> tuple[pd.Series, pd.Series]:
    """Per column: the first step where ``flags`` holds, and the step from which it holds to
    the end (nullable integers, <NA> when there is none)."""
    steps_arr = np.asarray(steps)
    ever = flags.any(axis=0)
    first = np.where(ever, steps_arr[flags.argmax(axis=0)], -1)
    trailing = np.cumprod(flags[::-1], axis=0).sum(axis=0)  # how many of the last snapshots hold
    stable = np.where(trailing > 0, steps_arr[np.minimum(len(steps_arr) - trailing, len(steps_arr) - 1)], -1)
    as_series = [pd.Series(v, dtype="Int64").mask(v < 0) for v in (first, stable)]
    return as_series[0], as_series[1]


def _per_feature(matched: np.ndarray, steps: list[int], similarity: np.ndarray) -> pd.DataFrame:
    first, stable = first_and_stable(matched, steps)
    at_first = similarity[matched.argmax(axis=0), np.arange(matched.shape[1])]
    frame = pd.DataFrame({"first_step": first, "stable_step": stable,
                          "similarity_first": np.where(matched.any(axis=0), at_first, np.nan)})  # fmt: skip
    return frame.rename_axis("feature")


def _per_step(long: pd.DataFrame, nulls: pd.DataFrame, per_feature: pd.DataFrame) -> pd.DataFrame:
    grouped = long.groupby("step", sort=True)
    out = nulls.copy()
    out["matched_share"] = grouped["matched"].mean()
    first, stable = per_feature["first_step"], per_feature["stable_step"]
    out["appeared_share"] = [float((first <= step).fillna(False).mean()) for step in out.index]
    out["stable_share"] = [float((stable <= step).fillna(False).mean()) for step in out.index]
    out["median"] = grouped["similarity"].median()
    out["q25"] = grouped["similarity"].quantile(0.25)
    out["q75"] = grouped["similarity"].quantile(0.75)
    out["same_unit_median"] = grouped["same_unit_similarity"].median()
    return out


@dataclass
class SpecialistEmergence:
    """When each category's final specialist becomes a significant specialist in training."""

    alpha: float
    min_auroc: float
    n_permutations: int
    long: pd.DataFrame
    """One row per (category, snapshot step): ``category, feature, step, auroc, p_value,
    q_value, mean_in, mean_out, is_specialist`` (q < alpha, AUROC >= min_auroc, mean in > out)."""
    per_category: pd.DataFrame
    """One row per category (index ``category``): ``feature``, ``first_step`` (first snapshot
    where it is a significant specialist) and ``stable_step`` (one from then on), <NA> when
    none; ``auroc_last`` and ``q_value_last`` at the last snapshot."""


def specialist_emergence(
    snapshot_pooled: Mapping[int, Pooled],
    labels: Sequence[str],
    features: Mapping[str, int],
    *,
    alpha: float = 0.05,
    min_auroc: float = 0.8,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> SpecialistEmergence:
    """Follow each category's specialist (``features``: category -> final feature id) through
    training: ``snapshot_pooled`` maps each snapshot step to its pooled activations
    ``[n_texts, d_sae]`` on the labelled texts (``labels``: one category per text).

    At every step, :func:`saelab.analysis.specialists` runs on the tracked columns only (the
    same unit index at every step; units keep their index in training): AUROC, a permutation
    p-value, and Benjamini-Hochberg within each category over the tracked features, a family
    fixed before looking at the snapshots. A specialist is the house's: q < ``alpha``, AUROC >=
    ``min_auroc`` and a higher mean inside the category.
    """
    check_unit(alpha, "alpha", low_open=True)
    items = as_steps(snapshot_pooled, "snapshot_pooled")
    matrices = [(step, as_numpy(pooled, f"snapshot_pooled[{step}]")) for step, pooled in items]
    widths = {x.shape for _, x in matrices}
    if len(widths) > 1:
        raise ValueError(f"snapshot_pooled matrices differ in shape {sorted(widths)}; every snapshot must pool "
                         "the same texts with the same SAE width")  # fmt: skip
    if not features:
        raise ValueError("features is empty; pass {category: final feature id} for at least one category")
    columns = list(dict.fromkeys(int(f) for f in features.values()))  # a feature may lead two categories
    check_feature_ids(columns, matrices[0][1].shape[1])
    tracked = {str(c): int(f) for c, f in features.items()}
    blocks = []
    for step, x in matrices:
        table = specialists(x[:, columns], labels, top=len(columns), n_permutations=n_permutations, alpha=alpha,
                            min_auroc=min_auroc, n_bootstrap=0, seed=seed, categories=list(tracked))  # fmt: skip
        table["feature"] = np.asarray(columns)[table["feature"].to_numpy()]
        rows = table[table["feature"].to_numpy() == np.array([tracked[c] for c in table["category"]])]
        blocks.append(rows.assign(step=step))
    long = pd.concat(blocks, ignore_index=True).loc[
        :, ["category", "feature", "step", "auroc", "p_value", "q_value", "mean_in", "mean_out", "is_specialist"]
    ]
    return SpecialistEmergence(alpha=alpha, min_auroc=min_auroc, n_permutations=n_permutations, long=long,
                               per_category=_per_category(long, tracked, [s for s, _ in items]))  # fmt: skip


def _per_category(long: pd.DataFrame, tracked: dict[str, int], steps: list[int]) -> pd.DataFrame:
    wide = long.pivot(index="step", columns="category", values="is_specialist").loc[steps, list(tracked)]
    first, stable = first_and_stable(wide.to_numpy(dtype=bool), steps)
    last = long[long["step"] == steps[-1]].set_index("category").loc[list(tracked)]
    frame = pd.DataFrame({
        "feature": list(tracked.values()), "first_step": first.array, "stable_step": stable.array,
        "auroc_last": last["auroc"].to_numpy(), "q_value_last": last["q_value"].to_numpy(),
    }, index=pd.Index(list(tracked), name="category"))  # fmt: skip
    return frame
