"""A 2-D map of an SAE's decoder directions: UMAP (umap-learn), or PCA as a fallback.

``feature_map(sae)`` returns one point per feature (``feature, x, y``, and ``cluster`` when
:attr:`MapConfig.n_clusters` is set), cached on disk by the directions' content and the
config, so a notebook rerun is instant. Clusters and their tokens live in
:mod:`saelab.evolution.clusters`.

Speed: in a fresh process, umap-learn's defaults spend nearly all their time in numba
compiling NN-descent and the fuzzy graph. Here the neighbours are exact (one matrix product:
cheaper than NN-descent for an SAE's thousands of directions), the layout starts from PCA (an
informative start keeps global structure as well as the spectral one; Kobak & Linderman 2021,
Nat. Biotechnol.) and runs 200 epochs (umap-learn's own default for large data), and
umap-learn's uncached numba kernels are cached on disk, so only the first map on a machine
pays for compiling them. ``bench/README.md`` ("Feature matching and maps") gives the times.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor

from saelab._util.atomic import atomic_save_tensors
from saelab._util.config import JsonConfig
from saelab._util.keys import stable_hash, tensors_digest
from saelab._util.paths import cache_dir
from saelab.analysis._checks import check_feature_ids
from saelab.evolution.clusters import (
    CLUSTER_METHODS,
    ClusterMethod,
    check_n_clusters,
    cluster_unit_directions,
    selected_directions,
)
from saelab.evolution.similarity import decoder_directions

log = logging.getLogger(__name__)

MapMethod = Literal["umap", "pca"]
MAP_METHODS: tuple[str, ...] = ("umap", "pca")
METRICS: tuple[str, ...] = ("cosine", "euclidean")
INITS: tuple[str, ...] = ("pca", "spectral", "random")
EXACT_NEIGHBOURS_UP_TO = 20_000
"""Above this many directions the exact ``n x n`` similarities cost more than NN-descent
(and their memory grows as n²), so UMAP finds the neighbours itself."""
_BLOCK_ELEMENTS = 1 << 25  # similarities computed per block of rows (128 MiB of float32)
_CACHE_VERSION = 1  # bump when the layout code changes what a config produces


@dataclass(frozen=True)
class MapConfig(JsonConfig):
    """How to lay out decoder directions in 2-D."""

    method: MapMethod = "umap"
    """``"umap"`` (neighbourhoods kept, global distances not) or ``"pca"`` (the two directions
    of largest variance: linear, fast, global). UMAP falls back to PCA when umap-learn is
    missing or fails to import."""
    n_neighbors: int = 15
    """UMAP: neighbours per direction in the graph it lays out (umap-learn's default). Fewer
    shows finer local structure, more a smoother global picture. Capped at n - 1."""
    min_dist: float = 0.1
    """UMAP: how tightly points may pack in 2-D, in [0, 1] (umap-learn's default)."""
    metric: Literal["cosine", "euclidean"] = "cosine"
    """Distance between directions. They are unit vectors, so both give the same neighbours;
    cosine is the usual one for decoder directions."""
    n_epochs: int = 200
    """UMAP: optimisation epochs (umap-learn uses 200 above 10,000 points, 500 below; 200 is
    the cheaper and barely changes trustworthiness)."""
    init: Literal["pca", "spectral", "random"] = "pca"
    """UMAP: the starting layout. ``"pca"`` is deterministic, cheap and keeps global structure;
    ``"spectral"`` is umap-learn's default; ``"random"`` loses global structure."""
    seed: int = 0
    """Seed of UMAP's optimisation and of the clustering: a seed gives the same map every run."""
    n_clusters: int | None = None
    """Also cluster the directions (in the full space, not in 2-D) into this many groups,
    added as the ``cluster`` column; None: no clustering."""
    cluster_method: ClusterMethod = "kmeans"
    """``"kmeans"`` (on unit vectors: cosine-like) or ``"agglomerative"`` (cosine, average linkage)."""

    def __post_init__(self) -> None:
        problems = []
        if self.method not in MAP_METHODS:
            problems.append(f"method must be one of {list(MAP_METHODS)}, got {self.method!r}")
        if not _is_int(self.n_neighbors) or self.n_neighbors < 2:
            problems.append(f"n_neighbors must be an integer >= 2, got {self.n_neighbors!r}")
        if not 0 <= self.min_dist <= 1:
            problems.append(f"min_dist must be in [0, 1], got {self.min_dist!r}")
        if self.metric not in METRICS:
            problems.append(f"metric must be one of {list(METRICS)}, got {self.metric!r}")
        if not _is_int(self.n_epochs) or self.n_epochs < 1:
            problems.append(f"n_epochs must be an integer >= 1, got {self.n_epochs!r}")
        if self.init not in INITS:
            problems.append(f"init must be one of {list(INITS)}, got {self.init!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            problems.append(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.n_clusters is not None and (not _is_int(self.n_clusters) or self.n_clusters < 2):
            problems.append(f"n_clusters must be None or an integer >= 2, got {self.n_clusters!r}")
        if self.cluster_method not in CLUSTER_METHODS:
            problems.append(f"cluster_method must be one of {list(CLUSTER_METHODS)}, got {self.cluster_method!r}")
        self.raise_problems(problems)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureMap:
    """Where each feature's decoder direction lands on the 2-D map."""

    points: pd.DataFrame
    """One row per feature: ``feature``, ``x``, ``y`` and, when clusters were asked for, ``cluster``."""
    method: MapMethod
    """The method that made the map: ``"pca"`` when UMAP was asked for but umap-learn could not be imported."""
    config: MapConfig
    from_cache: bool = False
    """Whether the map was read from the on-disk cache instead of computed."""


def feature_map(
    sae_or_directions: Any,
    config: MapConfig | None = None,
    *,
    features: Iterable[int] | None = None,
    use_cache: bool = True,
) -> FeatureMap:
    """A 2-D map of the decoder directions of an SAE (or of a ``[d_sae, d_in]`` tensor or array).

    ``features`` maps only those feature ids (the ``feature`` column keeps the SAE's ids).
    The map is deterministic for a given :attr:`MapConfig.seed`, and cached under
    ``$SAELAB_CACHE/feature_maps`` keyed by the directions' bytes and the config.
    """
    config = MapConfig() if config is None else config
    if not isinstance(config, MapConfig):
        raise TypeError(f"config must be a MapConfig, got {type(config).__name__}")
    directions, ids = selected_directions(sae_or_directions, features)
    if config.n_clusters is not None:
        check_n_clusters(config.n_clusters, len(ids))
    path = _cache_path(directions, ids, config)
    if use_cache and path.is_file():
        log.info("feature map read from %s", path)
        return FeatureMap(_read_points(path), config.method, config, from_cache=True)
    xy, method = _layout(directions, config)
    points = pd.DataFrame({"feature": ids, "x": xy[:, 0], "y": xy[:, 1]})
    if config.n_clusters is not None:
        labels = cluster_unit_directions(directions, config.n_clusters, config.cluster_method, config.seed)
        points["cluster"] = labels
    if use_cache and method == config.method:
        _write_points(path, points)
    return FeatureMap(points, method, config)


def _layout(directions: Float[Tensor, "n d_in"], config: MapConfig) -> tuple[np.ndarray, MapMethod]:
    if config.method == "pca":
        return pca_layout(directions), "pca"
    try:
        import umap  # noqa: F401  (imported here: a slow import, and only UMAP maps need it)
    except Exception as error:  # a broken numba/llvmlite install fails with other errors than ImportError
        log.warning("umap-learn could not be imported (%s); the feature map falls back to PCA", error)
        return pca_layout(directions), "pca"
    return umap_layout(directions, config), "umap"


def pca_layout(directions: Float[Tensor, "n d_in"]) -> Float[np.ndarray, "n 2"]:
    """The directions projected on their two principal components, each component's sign
    fixed (its largest loading positive) so the map does not flip between runs."""
    centred = directions.double() - directions.double().mean(dim=0)
    if centred.shape[1] <= centred.shape[0]:
        # The d x d scatter matrix's eigenvectors: cheaper than an SVD of [n, d] when n > d.
        components = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -2:].flip(1).T
    else:
        components = torch.linalg.svd(centred, full_matrices=False).Vh[:2]
    if components.shape[0] < 2:  # one-dimensional input: the second axis is flat
        components = torch.cat([components, torch.zeros_like(components)])
    largest = components.abs().argmax(dim=1)
    signs = torch.sign(components[torch.arange(2), largest])
    signs[signs == 0] = 1
    return (centred @ (components * signs[:, None]).T).float().numpy()


def exact_neighbours(
    directions: Float[Tensor, "n d_in"], k: int, metric: str
) -> tuple[Int[np.ndarray, "n k"], Float[np.ndarray, "n k"]]:
    """Each unit direction's ``k`` nearest directions (itself first, at distance 0), by
    cosine (``1 - cos``) or euclidean (``sqrt(2 - 2 cos)``) distance: one blocked matrix product."""
    n = directions.shape[0]
    step = max(1, _BLOCK_ELEMENTS // n)
    sims, index = torch.empty(n, k), torch.empty(n, k, dtype=torch.int64)
    for start in range(0, n, step):
        block = directions[start : start + step] @ directions.T
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = 2.0  # itself first, even when another direction is identical
        sims[start : start + step], index[start : start + step] = block.topk(k, dim=1)
    sims[:, 0] = 1.0
    cos = sims.clamp(-1.0, 1.0).double()
    dist = 1.0 - cos if metric == "cosine" else (2.0 - 2.0 * cos).clamp(min=0).sqrt()
    return index.numpy().astype(np.int32), dist.clamp(min=0).float().numpy()


def umap_layout(directions: Float[Tensor, "n d_in"], config: MapConfig) -> Float[np.ndarray, "n 2"]:
    """UMAP of unit directions with umap-learn, on exact neighbours when that is cheaper."""
    import umap

    _cache_umap_kernels()
    n = directions.shape[0]
    k = min(config.n_neighbors, n - 1)
    knn: tuple[Any, Any, Any] = (None, None, None)
    if n <= EXACT_NEIGHBOURS_UP_TO:
        index, dist = exact_neighbours(directions, k, config.metric)
        knn = (index, dist, None)
    reducer = umap.UMAP(
        n_neighbors=k,
        n_components=2,
        metric=config.metric,
        min_dist=config.min_dist,
        n_epochs=config.n_epochs,
        init=config.init,
        random_state=config.seed,
        precomputed_knn=knn,
    )
    with warnings.catch_warnings():
        # Expected here: a seed turns off umap's parallel SGD (we want determinism), and
        # neighbours given without a search index rule out .transform (never used).
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        xy = reducer.fit_transform(directions.numpy())
    return np.asarray(xy, dtype=np.float32)


def _cache_umap_kernels() -> None:
    """Cache umap-learn's graph and layout kernels on disk, as numba does for its own
    ``cache=True`` kernels: they are compiled in every fresh process otherwise (most of a
    fresh map's time). Only the serial layout kernel: its
    parallel twin shares the same Python function, hence the same cache file."""
    try:
        from umap import layouts, umap_

        kernels = (umap_.smooth_knn_dist, umap_.compute_membership_strengths,
                   layouts._nb_optimize_layout_euclidean_single_epoch)  # fmt: skip
        for kernel in kernels:
            if type(getattr(kernel, "_cache", None)).__name__ == "NullCache":
                kernel.enable_caching()
    except Exception as error:  # another umap-learn version, or no writable cache folder: only slower
        log.debug("umap-learn kernels left uncached: %s", error)


def _cache_path(directions: Tensor, ids: np.ndarray, config: MapConfig) -> Path:
    key = stable_hash(
        {
            "version": _CACHE_VERSION,
            "directions": tensors_digest({"directions": directions, "features": torch.from_numpy(ids)}),
            "config": config.to_dict(),
        }
    )
    return cache_dir() / "feature_maps" / f"{key}.safetensors"


def _write_points(path: Path, points: pd.DataFrame) -> None:
    # torch.tensor copies: pandas may hand back read-only or column-major arrays.
    tensors = {
        "feature": torch.tensor(points["feature"].to_numpy(np.int64)),
        "xy": torch.tensor(points[["x", "y"]].to_numpy(np.float32)).contiguous(),
    }
    if "cluster" in points:
        tensors["cluster"] = torch.tensor(points["cluster"].to_numpy(np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, tensors)


def _read_points(path: Path) -> pd.DataFrame:
    tensors = load_file(str(path))
    xy = tensors["xy"].numpy()
    points = pd.DataFrame({"feature": tensors["feature"].numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    if "cluster" in tensors:
        points["cluster"] = tensors["cluster"].numpy()
    return points


def group_closeness(
    sae_or_directions: Any, points: pd.DataFrame, groups: pd.Series, *, n_random: int = 20_000, seed: int = 0
) -> pd.DataFrame:
    """Do features of one group (e.g. specialists of one category) lie close together?

    ``groups`` maps feature id -> group; ``points`` is a map's frame (``feature, x, y`` and
    optionally ``cluster``) holding those features. For pairs of grouped features in the same
    group, pairs in different groups, and ``n_random`` random pairs of mapped features: the
    number of pairs, the mean cosine of their decoder directions, the median distance on the
    map and (with clusters) the share of pairs in one cluster. Rows ``same group``,
    ``different groups``, ``random pairs``; NaN where a kind has no pair.
    """
    directions = decoder_directions(sae_or_directions, "directions")
    if not isinstance(groups, pd.Series) or groups.empty:
        raise ValueError("groups must be a non-empty Series: feature id -> group")
    missing = [c for c in ("feature", "x", "y") if c not in points]
    if missing:
        raise ValueError(f"points lacks columns {missing}; it has {list(points.columns)}")
    frame = points.set_index("feature")
    ids = groups.index.to_numpy(np.int64)
    absent = sorted(set(ids.tolist()) - set(frame.index.tolist()))
    if absent:
        raise ValueError(f"features {absent[:10]} of groups are not on the map")
    check_feature_ids(frame.index, directions.shape[0])
    labels = groups.to_numpy()
    upper = np.triu(np.ones((len(ids), len(ids)), dtype=bool), k=1)
    same = (labels[:, None] == labels[None, :]) & upper
    rng = np.random.default_rng(seed)
    a, b = rng.choice(frame.index.to_numpy(np.int64), size=(2, n_random))
    kinds = {
        "same group": (ids[np.nonzero(same)[0]], ids[np.nonzero(same)[1]]),
        "different groups": (ids[np.nonzero(~same & upper)[0]], ids[np.nonzero(~same & upper)[1]]),
        "random pairs": (a[a != b], b[a != b]),
    }
    rows = {kind: _pair_stats(directions, frame, i, j) for kind, (i, j) in kinds.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pairs")


def _pair_stats(directions: Tensor, frame: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> dict[str, float]:
    stats: dict[str, float] = {"n_pairs": len(i), "mean_cosine": np.nan, "median_map_distance": np.nan}
    if "cluster" in frame:
        stats["same_cluster"] = np.nan
    if len(i) == 0:
        return stats
    cos = (directions[torch.from_numpy(i)] * directions[torch.from_numpy(j)]).sum(dim=1)
    xy_i, xy_j = frame.loc[i, ["x", "y"]].to_numpy(float), frame.loc[j, ["x", "y"]].to_numpy(float)
    stats["mean_cosine"] = float(cos.mean())
    stats["median_map_distance"] = float(np.median(np.linalg.norm(xy_i - xy_j, axis=1)))
    if "cluster" in frame:
        stats["same_cluster"] = float((frame.loc[i, "cluster"].to_numpy() == frame.loc[j, "cluster"].to_numpy()).mean())
    return stats
