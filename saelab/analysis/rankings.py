"""Rankings of features over pooled activations, each answering one precise question.

The rankings are defined so that they cannot collapse into one another (a first analysis
once reported the same feature as "most frequent" and "most selective"):

* :func:`strongest`: the largest activation on any text.
* :func:`frequent`: the share of texts on which the feature is active.
* :func:`selective`: strength when active, among features active on *at most*
  ``max_frequency`` of texts; a frequent feature is ineligible by construction.
* :func:`composite`: frequency x strength when active.
* :func:`concept_search`: what fires on a few example texts of a concept, discounted by a
  background.

Each returns a tidy DataFrame, best first, with a 1-based ``rank`` and the ``feature`` id.
"Active" means activation > ``threshold`` (0 by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from saelab.analysis._checks import as_numpy, check_top, check_unit, ranked

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled


class ActivityStats(NamedTuple):
    """Per-feature activity over texts, the ingredients of the simple rankings."""

    n_active: Int[np.ndarray, " d_sae"]
    """Texts with activation > threshold."""
    frequency: Float[np.ndarray, " d_sae"]
    """``n_active / n_texts``."""
    mean_when_active: Float[np.ndarray, " d_sae"]
    """Mean activation over the active texts only; 0 for a feature never active."""


def activity(pooled: Pooled, threshold: float = 0.0) -> ActivityStats:
    """How often and how strongly each feature fires (see :class:`ActivityStats`)."""
    x = as_numpy(pooled)
    active = x > threshold
    n_active = active.sum(axis=0)
    total = np.where(active, x, 0).sum(axis=0, dtype=np.float64)
    mean_when_active = np.divide(total, n_active, out=np.zeros_like(total), where=n_active > 0)
    return ActivityStats(n_active=n_active, frequency=n_active / x.shape[0], mean_when_active=mean_when_active)


def strongest(pooled: Pooled, top: int = 10) -> pd.DataFrame:
    """Features ranked by their largest activation on any text.

    Columns: ``rank, feature, max_activation`` (max over texts), ``argmax_text`` (index of
    that text; the first one on ties), ``mean_activation`` (mean over all texts) and
    ``frequency`` (share of texts with activation > 0).
    """
    top = check_top(top)
    x = as_numpy(pooled)
    frame = pd.DataFrame(
        {
            "feature": np.arange(x.shape[1]),
            "max_activation": x.max(axis=0).astype(np.float64),
            "argmax_text": x.argmax(axis=0),
            "mean_activation": x.mean(axis=0, dtype=np.float64),
            "frequency": activity(x).frequency,
        }
    )
    return ranked(frame, ["max_activation"], top)


def frequent(pooled: Pooled, top: int = 10, threshold: float = 0.0) -> pd.DataFrame:
    """Features ranked by how many texts they are active on.

    ``frequency`` = share of texts with activation > ``threshold`` (0..1); ``n_active`` the
    count; ``mean_when_active`` the mean activation over those texts (0 if none), which
    breaks ties in frequency.
    """
    top = check_top(top)
    stats = activity(pooled, threshold)
    frame = pd.DataFrame(
        {
            "feature": np.arange(len(stats.n_active)),
            "frequency": stats.frequency,
            "n_active": stats.n_active,
            "mean_when_active": stats.mean_when_active,
        }
    )
    return ranked(frame, ["frequency", "mean_when_active"], top)


def selective(
    pooled: Pooled, top: int = 10, max_frequency: float = 0.1, min_active: int = 1, threshold: float = 0.0
) -> pd.DataFrame:
    """High activation on few texts.

    Eligible features are active (activation > ``threshold``) on at least ``min_active``
    texts and on at most a share ``max_frequency`` of texts; they are ranked by
    ``mean_when_active`` (mean activation over the texts where the feature is active), ties
    by ``max_activation``. A feature active on more than ``max_frequency`` of the texts can
    never appear, so the most selective feature is never the most frequent one unless the
    most frequent feature is itself rare. Columns: ``rank, feature, frequency, n_active,
    mean_when_active, max_activation``. Empty (same columns) when no feature is eligible.
    """
    top = check_top(top)
    check_unit(max_frequency, "max_frequency", low_open=True)
    if isinstance(min_active, bool) or not isinstance(min_active, int | np.integer) or min_active < 1:
        raise ValueError(f"min_active must be an integer >= 1, got {min_active!r}")
    x = as_numpy(pooled)
    stats = activity(x, threshold)
    eligible = (stats.n_active >= min_active) & (stats.frequency <= max_frequency)
    frame = pd.DataFrame(
        {
            "feature": np.arange(x.shape[1]),
            "frequency": stats.frequency,
            "n_active": stats.n_active,
            "mean_when_active": stats.mean_when_active,
            "max_activation": x.max(axis=0).astype(np.float64),
        }
    ).loc[eligible]
    return ranked(frame, ["mean_when_active", "max_activation"], top)


def composite(pooled: Pooled, top: int = 10, threshold: float = 0.0) -> pd.DataFrame:
    """Features ranked by ``score = frequency x mean_when_active``.

    That is the sum of the above-threshold activations divided by the number of texts. With
    ``threshold=0`` and non-negative activations (ReLU, JumpReLU and TopK SAEs) it equals the
    plain mean activation over all texts. Columns: ``rank, feature, score, frequency,
    mean_when_active``.
    """
    top = check_top(top)
    stats = activity(pooled, threshold)
    frame = pd.DataFrame(
        {
            "feature": np.arange(len(stats.n_active)),
            "score": stats.frequency * stats.mean_when_active,
            "frequency": stats.frequency,
            "mean_when_active": stats.mean_when_active,
        }
    )
    return ranked(frame, ["score"], top)


def concept_search(
    example_pooled: Pooled, background_pooled: Pooled | None = None, top: int = 10, threshold: float = 0.0
) -> pd.DataFrame:
    """Features that fire on a few example texts of a concept, weighted by strength.

    ``score = mean_on_examples x frac_examples_active - mean_background``, where
    ``mean_on_examples`` is the mean activation over the examples, ``frac_examples_active``
    the share of examples with activation > ``threshold``, and ``mean_background`` the mean
    activation over ``background_pooled`` (0 when none is given), so features that fire on
    everything are pushed down. Columns: ``rank, feature, score, mean_on_examples,
    frac_examples_active, mean_background``.
    """
    top = check_top(top)
    ex = as_numpy(example_pooled, "example_pooled")
    mean_on = ex.mean(axis=0, dtype=np.float64)
    frac = (ex > threshold).mean(axis=0)
    if background_pooled is None:
        mean_bg = np.zeros_like(mean_on)
    else:
        bg = as_numpy(background_pooled, "background_pooled")
        if bg.shape[1] != ex.shape[1]:
            raise ValueError(
                f"background_pooled has {bg.shape[1]} features but example_pooled has {ex.shape[1]}; use the same SAE"
            )
        mean_bg = bg.mean(axis=0, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "feature": np.arange(ex.shape[1]),
            "score": mean_on * frac - mean_bg,
            "mean_on_examples": mean_on,
            "frac_examples_active": frac,
            "mean_background": mean_bg,
        }
    )
    return ranked(frame, ["score"], top)
