"""saelab.evolution.maps and .clusters: 2-D maps and clusters of decoder directions, on
planted groups (noisy copies of well-separated centres) whose answer is known."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from saelab import analysis, evolution
from saelab.evolution import clusters, maps
from saelab.evolution.clusters import cluster_directions
from saelab.evolution.similarity import decoder_directions
from saelab.extract import PerTokenFeatures


def planted(n_groups: int, per_group: int = 40, d: int = 32, noise: float = 0.5, seed: int = 0):
    """Unit directions scattered around ``n_groups`` random centres (cosine to their centre
    ~0.9, between centres ~0), shuffled, with each direction's group."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_groups, d, generator=gen)
    centres /= centres.norm(dim=1, keepdim=True)
    group = torch.arange(n_groups).repeat_interleave(per_group)
    dirs = centres[group] + noise * torch.randn(len(group), d, generator=gen) / d**0.5
    order = torch.randperm(len(group), generator=gen)
    return dirs[order], group[order].numpy()


def nearest_neighbour_agreement(xy: np.ndarray, group: np.ndarray) -> float:
    """Share of points whose nearest other point on the 2-D map is in the same group."""
    dist = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return float((group[dist.argmin(axis=1)] == group).mean())


@pytest.fixture(scope="module")
def three_groups():
    return planted(3)


@pytest.fixture(scope="module")
def umap_map(three_groups):
    """The one UMAP fit most tests share (umap-learn's first call in a process costs seconds)."""
    return evolution.feature_map(three_groups[0], evolution.MapConfig(n_clusters=3), use_cache=False)


# ---------------------------------------------------------------------------------------
# Maps


# The UMAP tests share one fit: ~3 s here once numba's caches are warm, but ~40 s on a fresh
# machine (numba compiles pynndescent on `import umap` and umap-learn's kernels on first use).
@pytest.mark.slow
def test_umap_map_keeps_planted_groups_apart(three_groups, umap_map):
    _, group = three_groups
    points = umap_map.points
    assert umap_map.method == "umap" and not umap_map.from_cache
    assert list(points.columns) == ["feature", "x", "y", "cluster"]
    assert points["feature"].tolist() == list(range(len(group)))
    assert nearest_neighbour_agreement(points[["x", "y"]].to_numpy(), group) >= 0.9
    assert adjusted_rand_score(group, points["cluster"]) >= 0.9


def test_pca_map_keeps_planted_groups_apart(three_groups):
    dirs, group = three_groups
    fmap = evolution.feature_map(dirs, evolution.MapConfig(method="pca"), use_cache=False)
    assert fmap.method == "pca" and "cluster" not in fmap.points
    assert nearest_neighbour_agreement(fmap.points[["x", "y"]].to_numpy(), group) >= 0.9


def test_pca_layout_is_the_top_two_principal_components():
    dirs, _ = planted(3)
    xy = maps.pca_layout(dirs / dirs.norm(dim=1, keepdim=True))
    unit = (dirs / dirs.norm(dim=1, keepdim=True)).double().numpy()
    centred = unit - unit.mean(axis=0)
    _, singular, _ = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.linalg.norm(xy, axis=0), singular[:2], rtol=1e-4)
    np.testing.assert_allclose(xy.mean(axis=0), 0, atol=1e-5)


@pytest.mark.slow
def test_umap_map_is_deterministic_for_a_seed(three_groups, umap_map):
    dirs, _ = three_groups
    again = evolution.feature_map(dirs, evolution.MapConfig(n_clusters=3), use_cache=False)
    pd.testing.assert_frame_equal(again.points, umap_map.points)
    other = evolution.feature_map(dirs, evolution.MapConfig(seed=1), use_cache=False)
    assert not np.allclose(other.points[["x", "y"]].to_numpy(), umap_map.points[["x", "y"]].to_numpy())


def test_features_maps_a_subset_and_keeps_the_sae_ids(three_groups):
    dirs, _ = three_groups
    chosen = [7, 3, 50, 11, 90]
    fmap = evolution.feature_map(dirs, evolution.MapConfig(method="pca"), features=chosen, use_cache=False)
    assert fmap.points["feature"].tolist() == chosen
    direct = maps.pca_layout(decoder_directions(dirs)[chosen])
    np.testing.assert_allclose(fmap.points[["x", "y"]].to_numpy(), direct, rtol=1e-5)


def test_exact_neighbours_put_each_direction_first_and_match_brute_force():
    dirs, _ = planted(3, per_group=10)
    unit = dirs / dirs.norm(dim=1, keepdim=True)
    index, dist = maps.exact_neighbours(unit, 5, "cosine")
    assert (index[:, 0] == np.arange(len(unit))).all() and (dist[:, 0] == 0).all()
    cos = (unit @ unit.T).numpy()
    expected = np.argsort(-cos, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.sort(index, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(dist, 1 - np.take_along_axis(cos, index.astype(np.int64), 1), atol=1e-5)
    _, euclid = maps.exact_neighbours(unit, 5, "euclidean")
    np.testing.assert_allclose(euclid, np.sqrt(np.maximum(2 * dist, 0)), atol=1e-4)


def test_map_is_cached_on_disk_by_directions_and_config(monkeypatch, tmp_path, three_groups):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    dirs, _ = three_groups
    config = evolution.MapConfig(method="pca", n_clusters=3)
    first = evolution.feature_map(dirs, config)
    second = evolution.feature_map(dirs, config)
    assert not first.from_cache and second.from_cache
    pd.testing.assert_frame_equal(first.points, second.points, check_dtype=False)
    assert not evolution.feature_map(dirs, evolution.MapConfig(method="pca")).from_cache
    assert not evolution.feature_map(dirs * 2 + 1, config).from_cache  # other directions, other key
    assert len(list((tmp_path / "feature_maps").glob("*.safetensors"))) == 3


def test_without_umap_learn_the_map_falls_back_to_pca(monkeypatch, tmp_path, caplog, three_groups):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` now raises ImportError
    dirs, _ = three_groups
    with caplog.at_level(logging.WARNING, logger="saelab.evolution.maps"):
        fmap = evolution.feature_map(dirs)
    assert fmap.method == "pca" and fmap.config.method == "umap"
    assert "falls back to PCA" in caplog.text
    np.testing.assert_allclose(fmap.points[["x", "y"]].to_numpy(), maps.pca_layout(decoder_directions(dirs)))
    # A fallback is never cached as if it were the UMAP map.
    assert not evolution.feature_map(dirs).from_cache


def test_map_config_round_trips_and_lists_every_problem():
    config = evolution.MapConfig(method="pca", n_neighbors=5, n_clusters=4, cluster_method="agglomerative")
    assert evolution.MapConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="method must be one of") as err:
        evolution.MapConfig(method="tsne", n_neighbors=1, min_dist=2.0, init="umap", n_clusters=1)  # type: ignore[arg-type]
    for problem in ("n_neighbors", "min_dist", "init", "n_clusters"):
        assert problem in str(err.value)
    with pytest.raises(ValueError, match="cluster_method"):
        evolution.MapConfig(cluster_method="dbscan")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("directions", "kwargs", "message"),
    [
        (torch.zeros(0, 8), {}, "non-empty"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]]), {}, "NaN"),
        (torch.eye(2), {}, "at least 3 directions"),
        (torch.eye(4), {"features": [0, 9]}, "out of range"),
        (torch.eye(4), {"features": [0, 1, 1]}, "duplicates"),
        (torch.eye(4), {"config": evolution.MapConfig(method="pca", n_clusters=5)}, "more than the 4"),
        ("not directions", {}, "must be an SAE"),
    ],
)
def test_bad_input_is_refused_clearly(directions, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        evolution.feature_map(directions, use_cache=False, **kwargs)


# ---------------------------------------------------------------------------------------
# Clusters


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_clustering_recovers_planted_groups(method):
    dirs, group = planted(5, noise=0.6, seed=1)
    labels = cluster_directions(dirs, 5, method=method, seed=0)
    assert adjusted_rand_score(group, labels) >= 0.9
    np.testing.assert_array_equal(labels, cluster_directions(dirs, 5, method=method, seed=0))
    # Canonical ids: 0 is the largest cluster.
    sizes = np.bincount(labels)
    assert (np.diff(sizes) <= 0).all()


def test_canonical_labels_order_by_size_then_first_member():
    np.testing.assert_array_equal(clusters.canonical_labels(np.array([7, 3, 3, 7, 5, 5, 5])), [1, 2, 2, 1, 0, 0, 0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": 1}, "n_clusters must be an integer >= 2"),
        ({"n_clusters": 300}, "more than the 120"),
        ({"n_clusters": 3, "method": "dbscan"}, "Unknown cluster method"),
        ({"n_clusters": 3, "seed": -1}, "seed"),
    ],
)
def test_cluster_directions_refuses_bad_input(kwargs, message):
    dirs, _ = planted(3)
    with pytest.raises(ValueError, match=message):
        cluster_directions(dirs, **kwargs)


def per_token_with_repeats() -> PerTokenFeatures:
    """Two texts; token " x" appears three times, so its activations add up per feature."""
    tokens = [["a", " x", " x"], ["b", " x", "c"]]
    dense = torch.tensor(
        [[1.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0.5], [0, 0, 4.0], [0, 1.0, 0], [3.0, 0, 0]]
    )  # rows = tokens in order; features 0, 1, 2
    r, c = dense.nonzero(as_tuple=True)
    return PerTokenFeatures(
        tokens=tokens,
        token_ids=[[1, 2, 2], [3, 2, 4]],
        d_sae=4,  # feature 3 never fires
        row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(r, minlength=6), 0)]),
        feature_idx=c,
        values=dense[r, c],
        text_row_start=torch.tensor([0, 3, 6]),
    )


def test_feature_top_tokens_match_token_profile_for_every_feature():
    per_token = per_token_with_repeats()
    top = evolution.feature_top_tokens(per_token, top=2)
    assert list(top.columns) == ["feature", "rank", "token", "total", "share"]
    assert 3 not in set(top["feature"])
    for feature in (0, 1, 2):
        expected = analysis.token_profile(per_token, feature, top=2)
        mine = top[top["feature"] == feature]
        assert mine["token"].tolist() == expected["token"].tolist()
        np.testing.assert_allclose(mine["total"], expected["total"])
        np.testing.assert_allclose(mine["share"], expected["share"])
    assert top.loc[top["feature"] == 1, "token"].tolist() == [" x"]  # 2 + 2 + 1 on one token


def test_cluster_top_tokens_name_what_sets_each_cluster_apart():
    feature_tokens = {0: ["def", "."], 1: ["def", " return", "."], 2: ["http", "."], 3: ["http", "://", "."], 4: ["."]}
    labels = pd.Series([0, 0, 1, 1, 1], index=[0, 1, 2, 3, 4])
    table = evolution.cluster_top_tokens(labels, feature_tokens, top=3)
    assert table["cluster"].tolist() == [0, 1] and table["n_features"].tolist() == [2, 3]
    # "." is listed by every feature: it sets no cluster apart.
    assert table.loc[0, "top_tokens"] == ["def", " return"] and table.loc[0, "token_counts"] == [2, 1]
    assert table.loc[1, "top_tokens"] == ["http", "://"]
    tidy = pd.DataFrame({"feature": [0, 0, 2, 2], "token": ["def", ".", ".", "http"]})
    from_frame = evolution.cluster_top_tokens([0, 1], tidy, features=[0, 2])
    assert from_frame["top_tokens"].tolist() == [["def"], ["http"]]


@pytest.mark.parametrize(
    ("labels", "tokens", "kwargs", "message"),
    [
        ([], {}, {}, "non-empty"),
        ([0, 1], {}, {"features": [0, 1, 2]}, "3 ids but labels has 2"),
        (pd.Series([0, 1]), {}, {"features": [0, 1]}, "do not pass features"),
        ([0, None], {}, {}, "missing"),
        ([0, 1], pd.DataFrame({"feature": [0]}), {}, "lacks columns"),
        ([0, 1], ["def"], {}, "must map feature id"),
        ([0, 1], {}, {"top": 0}, "top must be"),
    ],
)
def test_cluster_top_tokens_refuses_bad_input(labels, tokens, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evolution.cluster_top_tokens(labels, tokens, **kwargs)


def test_group_closeness_finds_planted_groups_closer_than_random_pairs():
    dirs, group = planted(3, per_group=20)
    fmap = evolution.feature_map(dirs, evolution.MapConfig(method="pca", n_clusters=3), use_cache=False)
    groups = pd.Series(group[:30], index=np.arange(30)).map({0: "python", 1: "math", 2: "urls"})
    table = evolution.group_closeness(dirs, fmap.points, groups, n_random=2_000)
    assert table.index.tolist() == ["same group", "different groups", "random pairs"]
    same, other, rand = (table.loc[k] for k in table.index)
    sizes = groups.value_counts()
    assert (
        same["n_pairs"] == sum(n * (n - 1) // 2 for n in sizes) and same["n_pairs"] + other["n_pairs"] == 30 * 29 // 2
    )
    assert same["mean_cosine"] > 0.7 > rand["mean_cosine"] and other["mean_cosine"] < 0.2
    assert same["median_map_distance"] < rand["median_map_distance"] and same["same_cluster"] == 1.0
    lone = evolution.group_closeness(dirs, fmap.points[["feature", "x", "y"]], groups.iloc[:1])
    assert lone.loc["same group", "n_pairs"] == 0 and np.isnan(lone.loc["same group", "mean_cosine"])
    assert "same_cluster" not in lone
    with pytest.raises(ValueError, match="not on the map"):
        evolution.group_closeness(dirs, fmap.points.iloc[:10], groups)
    with pytest.raises(ValueError, match="non-empty Series"):
        evolution.group_closeness(dirs, fmap.points, pd.Series(dtype=object))
