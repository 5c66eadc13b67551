"""The statistics every scorer reports, and the controls to read them against.

* ``auroc``: P(score of a positive > score of a negative) + 0.5 P(tie), the Mann-Whitney U
  from midranks, so it needs no threshold and ties count half.
* ``accuracy`` / ``balanced_accuracy``: for scorers that say yes or no. Plain accuracy
  rewards a scorer that always says "no" with the share of negatives (0.71 with 2
  positives and 5 negatives); ``all_negative`` gives that baseline, and balanced accuracy
  (the mean of the true-positive and true-negative rates) puts it at 0.5 whatever the mix.
* ``median_margin``: an explanation's score minus its control's (a shuffled explanation on
  the same contexts), paired per feature, with a bootstrap interval of the median.
* ``bootstrap_mean_ci``: a mean with a percentile bootstrap interval, for replication tables.

Pure numpy and scipy, seeded and reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from saelab.analysis.significance import midranks

log = logging.getLogger(__name__)

# Bounds one bootstrap block ([replicates, n] float64): about 32 MB.
MAX_BLOCK_ELEMENTS = 2**22

ArrayLike = Sequence[float] | Sequence[int] | Sequence[bool] | np.ndarray


class Baseline(NamedTuple):
    """What a scorer that always answers "no" gets on a set of labels."""

    accuracy: float
    """The share of negatives: what plain accuracy credits for saying nothing."""
    balanced_accuracy: float
    auroc: float


class MarginSummary(NamedTuple):
    """Paired per-feature margins (score - control) and the median's bootstrap interval."""

    margins: Float[np.ndarray, " n_features"]
    """score - control per feature, NaN where either could not be scored."""
    median: float
    low: float
    high: float
    """Percentile bootstrap interval of the median over features (``confidence`` wide)."""
    share_positive: float
    """Share of the scored features whose margin is > 0."""
    n_scored: int
    n_dropped: int
    """Features left out because their score or control was NaN."""


class Interval(NamedTuple):
    low: float
    high: float


class MeanCI(NamedTuple):
    """A mean and its percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    """Values used (NaNs dropped)."""
    n_dropped: int


def _binary_labels(labels: ArrayLike, name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {tuple(array.shape)}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1 (or bool); got values {np.unique(array)[:5].tolist()}")
    return array.astype(bool)


def _check_both_classes(labels: np.ndarray, what: str) -> None:
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        kind = "negative" if n_pos else "positive"
        raise ValueError(f"{what} needs at least one positive and one negative label; there is no {kind} one")


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Mann-Whitney AUROC of ``scores`` for ``labels`` (1 = positive), ties counted half.

    1 when every positive outscores every negative, 0 when the reverse, 0.5 when all tie.
    """
    y = _binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"labels and scores must have the same shape; got {y.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf; drop the unscored items before computing an AUROC")
    _check_both_classes(y, "AUROC")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = midranks(s[:, None])[:, 0]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(labels: ArrayLike, predicted: ArrayLike) -> float:
    """Share of items whose prediction (0/1) equals the label."""
    y, p = _binary_labels(labels), _binary_labels(predicted, "predicted")
    if p.shape != y.shape:
        raise ValueError(f"labels and predicted must have the same shape; got {y.shape} and {p.shape}")
    return float((y == p).mean())


def balanced_accuracy(labels: ArrayLike, predicted: ArrayLike) -> float:
    """Mean of the true-positive and the true-negative rate: 0.5 for any constant guess."""
    y, p = _binary_labels(labels), _binary_labels(predicted, "predicted")
    if p.shape != y.shape:
        raise ValueError(f"labels and predicted must have the same shape; got {y.shape} and {p.shape}")
    _check_both_classes(y, "Balanced accuracy")
    return float((p[y].mean() + (~p[~y]).mean()) / 2)


def all_negative(labels: ArrayLike) -> Baseline:
    """The scores of a scorer that says "no" to everything (and gives every item the same
    score), computed with the same functions as a real scorer's."""
    y = _binary_labels(labels)
    no = np.zeros_like(y)
    return Baseline(accuracy=accuracy(y, no), balanced_accuracy=balanced_accuracy(y, no), auroc=auroc(y, no))


def _check_bootstrap(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _finite_1d(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains inf; only NaN marks an unscored item")
    return array


def _bootstrap(
    values: Float[np.ndarray, " n"], statistic: Callable[..., np.ndarray], n_boot: int, confidence: float, seed: int
) -> Interval:
    """Percentile interval of ``statistic(resamples, axis=1)`` over ``n_boot`` resamples of ``values``."""
    rng = np.random.default_rng(seed)
    n = values.size
    per_block = max(1, MAX_BLOCK_ELEMENTS // n)
    replicates = []
    for start in range(0, n_boot, per_block):
        b = min(per_block, n_boot - start)
        replicates.append(statistic(values[rng.integers(0, n, (b, n))], axis=1))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.concatenate(replicates), [tail, 100 - tail])
    return Interval(float(low), float(high))


def median_margin(
    scores: ArrayLike, controls: ArrayLike, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> MarginSummary:
    """The median over features of ``scores - controls`` (paired by position), with a
    bootstrap interval over features. Features where either is NaN are dropped and counted;
    with none left, every summary number is NaN."""
    _check_bootstrap(n_boot, confidence)
    s, c = _finite_1d(scores, "scores"), _finite_1d(controls, "controls")
    if s.shape != c.shape:
        raise ValueError(f"scores and controls are paired per feature; got shapes {s.shape} and {c.shape}")
    margins = s - c
    kept = margins[~np.isnan(margins)]
    n_dropped = int(margins.size - kept.size)
    if n_dropped:
        log.info("median_margin: %d of %d features unscored (NaN), left out", n_dropped, margins.size)
    if kept.size == 0:
        nan = float("nan")
        return MarginSummary(margins, nan, nan, nan, nan, n_scored=0, n_dropped=n_dropped)
    low, high = _bootstrap(kept, np.median, n_boot, confidence, seed)
    return MarginSummary(
        margins=margins,
        median=float(np.median(kept)),
        low=low,
        high=high,
        share_positive=float((kept > 0).mean()),
        n_scored=int(kept.size),
        n_dropped=n_dropped,
    )


def bootstrap_mean_ci(values: ArrayLike, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> MeanCI:
    """Mean of ``values`` with a percentile bootstrap interval; NaNs dropped and counted
    (all NaN or empty gives a NaN summary)."""
    _check_bootstrap(n_boot, confidence)
    array = _finite_1d(values, "values")
    kept = array[~np.isnan(array)]
    n_dropped = int(array.size - kept.size)
    if kept.size == 0:
        nan = float("nan")
        return MeanCI(nan, nan, nan, n=0, n_dropped=n_dropped)
    low, high = _bootstrap(kept, np.mean, n_boot, confidence, seed)
    return MeanCI(mean=float(kept.mean()), low=low, high=high, n=int(kept.size), n_dropped=n_dropped)
