"""Groups of decoder directions, and what tokens each group's features fire on.

* :func:`cluster_directions`: k-means or agglomerative clustering on cosine distance. The
  directions are unit vectors, where squared euclidean distance is ``2 - 2 cos``, so k-means
  on them groups by cosine (nearly spherical k-means: only its centroids are not renormalised).
* :func:`feature_top_tokens`: every feature's top token strings over a dataset, vectorised
  (one sparse sum instead of one :func:`saelab.analysis.token_profile` per feature).
* :func:`cluster_top_tokens`: each cluster's most common top tokens among its features.

Cluster ids are canonical: 0 is the largest cluster, ties broken by the smallest feature id,
so the same partition always gets the same labels whatever the algorithm's own numbering.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from jaxtyping import Float, Int
from torch import Tensor

from saelab.analysis._checks import check_feature_ids, check_top
from saelab.evolution.similarity import decoder_directions

if TYPE_CHECKING:
    from saelab.extract.per_token import PerTokenFeatures

ClusterMethod = Literal["kmeans", "agglomerative"]
CLUSTER_METHODS: tuple[str, ...] = ("kmeans", "agglomerative")
KMEANS_RESTARTS = 4  # k-means++ starts kept best-of; one start sometimes splits a planted group


def check_n_clusters(n_clusters: Any, n: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer) or n_clusters < 2:
        raise ValueError(f"n_clusters must be an integer >= 2, got {n_clusters!r}")
    if n_clusters > n:
        raise ValueError(f"n_clusters={n_clusters} is more than the {n} directions to cluster")
    return int(n_clusters)


def selected_directions(
    sae_or_directions: Any, features: Iterable[int] | None
) -> tuple[Float[Tensor, "n d_in"], Int[np.ndarray, " n"]]:
    """Unit directions of the chosen features (all when ``features`` is None), and their ids."""
    directions = decoder_directions(sae_or_directions, "directions")
    if features is None:
        ids = np.arange(directions.shape[0])
    else:
        ids = np.asarray(check_feature_ids(features, directions.shape[0]), dtype=np.int64)
        directions = directions[torch.from_numpy(ids)]
    if len(ids) < 3:
        raise ValueError(f"A map or clustering needs at least 3 directions, got {len(ids)}")
    return directions, ids


def cluster_directions(
    sae_or_directions: Any,
    n_clusters: int,
    *,
    method: ClusterMethod = "kmeans",
    seed: int = 0,
    features: Iterable[int] | None = None,
) -> Int[np.ndarray, " n"]:
    """A cluster id per decoder direction (per id of ``features`` when given, in that order),
    on cosine distance; deterministic for a given ``seed``."""
    directions, ids = selected_directions(sae_or_directions, features)
    return cluster_unit_directions(directions, check_n_clusters(n_clusters, len(ids)), method, seed)


def cluster_unit_directions(
    directions: Float[Tensor, "n d_in"], n_clusters: int, method: str, seed: int
) -> Int[np.ndarray, " n"]:
    """Canonical cluster labels of unit directions (see the module docstring)."""
    if method not in CLUSTER_METHODS:
        raise ValueError(f"Unknown cluster method {method!r}; valid: {list(CLUSTER_METHODS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    points = directions.double().numpy()
    if method == "kmeans":
        from sklearn.cluster import KMeans  # sklearn is imported only when clusters are asked for

        kmeans = KMeans(n_clusters, n_init=KMEANS_RESTARTS, random_state=seed)  # pyright: ignore[reportArgumentType]
        labels = kmeans.fit_predict(points)
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters, metric="cosine", linkage="average").fit_predict(points)
    return canonical_labels(labels)


def canonical_labels(labels: Int[np.ndarray, " n"]) -> Int[np.ndarray, " n"]:
    """Relabel clusters 0, 1, ... by decreasing size, ties by their first member."""
    labels = np.asarray(labels)
    names, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -sizes))
    new = np.empty(len(names), dtype=np.int64)
    new[order] = np.arange(len(names))
    return new[inverse.reshape(-1)]


def feature_top_tokens(per_token: PerTokenFeatures, top: int = 3) -> pd.DataFrame:
    """Each feature's ``top`` token strings by summed activation over every kept token of
    ``per_token`` (the ranking of :func:`saelab.analysis.token_profile`, for all features at once).

    Tidy: ``feature, rank, token, total, share`` (``share``: of the feature's whole activation);
    features that never fire have no rows.
    """
    top = check_top(top)
    flat = [tok for toks in per_token.tokens for tok in toks]
    if not flat:
        raise ValueError("per_token holds no tokens")
    codes, names = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    rows = per_token.row_of_nonzero().numpy()
    feature = per_token.feature_idx.numpy()
    values = per_token.values.double().numpy()
    keep = values > 0
    summed = sp.coo_matrix(
        (values[keep], (feature[keep], codes[rows[keep]])), shape=(per_token.d_sae, len(names))
    ).tocsr()  # duplicates (the same token string on many rows) are summed here
    summed.sum_duplicates()
    coo = summed.tocoo()
    order = np.lexsort((coo.col, np.negative(coo.data), coo.row))  # by feature, then largest total first
    row, col, total = coo.row[order], coo.col[order], coo.data[order]
    starts = np.searchsorted(row, row, side="left")
    rank = np.arange(len(row)) - starts + 1
    grand = np.bincount(row, weights=total, minlength=per_token.d_sae)
    chosen = rank <= top
    return pd.DataFrame(
        {
            "feature": row[chosen].astype(np.int64),
            "rank": rank[chosen].astype(np.int64),
            "token": [str(names[c]) for c in col[chosen]],
            "total": total[chosen],
            "share": total[chosen] / grand[row[chosen]],
        }
    )


def _tokens_by_feature(feature_tokens: Mapping[int, Sequence[str]] | pd.DataFrame) -> dict[int, list[str]]:
    if isinstance(feature_tokens, pd.DataFrame):
        missing = {"feature", "token"} - set(feature_tokens.columns)
        if missing:
            raise ValueError(f"feature_tokens lacks columns {sorted(missing)}; it has {list(feature_tokens.columns)}")
        frame = feature_tokens.sort_values("rank", kind="stable") if "rank" in feature_tokens else feature_tokens
        lists = frame.groupby("feature", sort=False)["token"].agg(list)
        return {int(f): [str(t) for t in tokens] for f, tokens in zip(lists.index.to_numpy(), lists, strict=True)}
    if not isinstance(feature_tokens, Mapping):
        raise ValueError(
            "feature_tokens must map feature id -> token strings, or be a DataFrame with feature and token "
            f"columns (e.g. feature_top_tokens(per_token)); got {type(feature_tokens).__name__}"
        )
    return {
        int(f): [tokens] if isinstance(tokens, str) else [str(t) for t in tokens]
        for f, tokens in feature_tokens.items()
    }


def _labelled_features(
    labels: Sequence[int] | np.ndarray | pd.Series, features: Iterable[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(labels, pd.Series):
        if features is not None:
            raise ValueError("labels is a Series (its index is the feature ids); do not pass features too")
        ids, values = labels.index.to_numpy(), labels.to_numpy()
    else:
        values = np.asarray(labels)
        ids = np.arange(len(values)) if features is None else np.asarray(list(features))
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence of cluster ids, got shape {values.shape}")
    if len(ids) != len(values):
        raise ValueError(f"features has {len(ids)} ids but labels has {len(values)} cluster ids")
    if pd.isna(values).any():
        raise ValueError("labels contains missing cluster ids")
    return ids.astype(np.int64), values


def cluster_top_tokens(
    labels: Sequence[int] | np.ndarray | pd.Series,
    feature_tokens: Mapping[int, Sequence[str]] | pd.DataFrame,
    *,
    features: Iterable[int] | None = None,
    top: int = 5,
) -> pd.DataFrame:
    """Each cluster's ``top`` distinctive tokens: those listed by a larger share of its
    features than of all features (the excess share), among each feature's own top tokens.
    Plain counts would name the same punctuation and blank tokens for every cluster, since
    those carry most features' activation. Ties: more features, then alphabetical.

    ``labels`` is a cluster id per feature: a Series indexed by feature id (e.g.
    ``fmap.points.set_index("feature")["cluster"]``), or a sequence aligned with ``features``
    (default ``0..n-1``). ``feature_tokens`` maps feature id -> its tokens, best first, or is
    a tidy frame with ``feature`` and ``token`` columns like :func:`feature_top_tokens`
    returns. Columns: ``cluster, n_features, top_tokens, token_counts`` (how many of the
    cluster's features list each token), one row per cluster; a token no more common in the
    cluster than overall is never listed.
    """
    top = check_top(top)
    ids, values = _labelled_features(labels, features)
    tokens = _tokens_by_feature(feature_tokens)
    listed = {int(f): set(tokens.get(int(f), [])) for f in ids}
    overall = Counter(token for feature in ids.tolist() for token in listed[feature])
    rows = []
    for cluster in pd.unique(values):
        members = ids[values == cluster].tolist()
        counts = Counter(token for feature in members for token in listed[feature])
        excess = {t: c / len(members) - overall[t] / len(ids) for t, c in counts.items()}
        best = sorted((t for t in counts if excess[t] > 1e-12), key=lambda t: (-excess[t], -counts[t], t))[:top]
        rows.append({"cluster": cluster, "n_features": len(members), "top_tokens": best,
                     "token_counts": [counts[t] for t in best]})  # fmt: skip
    return pd.DataFrame(rows).sort_values("cluster", kind="stable").reset_index(drop=True)
