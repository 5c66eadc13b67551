"""Which features fire on the same texts: Jaccard similarity of their active sets and the
correlation of their activations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from saelab.analysis._checks import as_numpy, check_feature_ids, check_top
from saelab.analysis.rankings import frequent

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled


@dataclass(frozen=True)
class CoActivation:
    """Which features fire on the same texts."""

    matrix: pd.DataFrame
    """Jaccard similarity |A and B| / |A or B| of the sets of texts where features are
    active (features x features, index and columns are feature ids; 0 when neither fires)."""
    pairs: pd.DataFrame
    """Columns ``feature_a < feature_b, n_both, n_a, n_b, jaccard, correlation`` (Pearson
    correlation of the activations over texts; NaN when a feature is constant), sorted by
    jaccard, then n_both, descending."""


def coactivation(
    pooled: Pooled, features: Sequence[int] | None = None, threshold: float = 0.0, top: int = 20
) -> CoActivation:
    """Co-activation of ``features`` (default: the ``top`` most frequent) over texts; the
    ``top`` pairs with the highest Jaccard similarity are listed in ``pairs``."""
    top = check_top(top)
    x = as_numpy(pooled)
    if features is None:
        ids = frequent(x, top=top, threshold=threshold)["feature"].tolist()
    else:
        ids = check_feature_ids(features, x.shape[1])
    sub = x[:, ids].astype(np.float64)
    active = (sub > threshold).astype(np.float64)
    n_both = active.T @ active
    n_each = np.diag(n_both)
    union = n_each[:, None] + n_each[None, :] - n_both
    jaccard = np.divide(n_both, union, out=np.zeros_like(n_both), where=union > 0)
    centred = sub - sub.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (centred.T @ centred) / np.outer(norm, norm)
    correlation[(norm == 0)[:, None] | (norm == 0)[None, :]] = np.nan
    i, j = np.triu_indices(len(ids), k=1)
    a, b = np.asarray(ids)[i], np.asarray(ids)[j]
    pairs = pd.DataFrame(
        {
            "feature_a": np.minimum(a, b),
            "feature_b": np.maximum(a, b),
            "n_both": n_both[i, j].astype(np.int64),
            "n_a": np.where(a < b, n_each[i], n_each[j]).astype(np.int64),
            "n_b": np.where(a < b, n_each[j], n_each[i]).astype(np.int64),
            "jaccard": jaccard[i, j],
            "correlation": correlation[i, j],
        }
    )
    pairs = pairs.sort_values(
        ["jaccard", "n_both", "feature_a", "feature_b"], ascending=[False, False, True, True], kind="stable"
    )
    matrix = pd.DataFrame(jaccard, index=pd.Index(ids, name="feature"), columns=pd.Index(ids, name="feature"))
    return CoActivation(matrix=matrix, pairs=pairs.head(top).reset_index(drop=True))
