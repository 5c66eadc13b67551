"""What happens to features between two hooks: the links that matching makes, and the
persist / split / merge / birth / death events those links imply.

Between consecutive hooks L -> L' with matches ``m`` (A = L, B = L'), the links are

    {(a, m.best[a]) : a matched forward} ∪ {(m.best_b[b], b) : b matched backward},

each kept once; "matched" means reaching the pair's one threshold in either direction (the
null quantile of A's best matches, :func:`saelab.evolution.matches_from`). ``out(a)`` is the
number of distinct b linked to a and ``in(b)`` the number of distinct a linked to b. Then

* death: a feature a of L with out(a) = 0 (nothing at L' continues it);
* birth: a feature b of L' with in(b) = 0 (nothing at L leads to it);
* split: a with out(a) >= 2 (one earlier feature matches several later ones);
* merge: b with in(b) >= 2 (several earlier features match one later one);
* persist: a link (a, b) with out(a) = 1 and in(b) = 1 (a one-to-one continuation).

Persist counts links, split and death count features of L, merge and birth features of L'.
Both directions are needed: when a feature splits in two, only one child can be its best
forward match, but the feature is the best backward match of both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from saelab.evolution.matching import FeatureMatches

EVENTS: tuple[str, ...] = ("persist", "split", "merge", "birth", "death")
LINK_COLUMNS = ["feature_a", "feature_b", "similarity", "direction"]


def links_between(matches: FeatureMatches) -> pd.DataFrame:
    """The links of one pair of hooks: ``feature_a, feature_b, similarity, direction``.

    ``direction`` says which side's best match made the link: ``forward`` (a's best match
    in B), ``backward`` (b's best match in A) or ``both``. Sorted by ``feature_a, feature_b``.
    """
    best, best_b = matches.best, matches.best_b
    forward = best.loc[best["matched"].astype(bool)]
    backward = best_b.loc[best_b["matched"].astype(bool)]
    fwd = pd.DataFrame({
        "feature_a": forward.index.to_numpy(dtype=np.int64),
        "feature_b": forward["best_match"].to_numpy(dtype=np.int64),
        "similarity": forward["similarity"].to_numpy(dtype=np.float64), "forward": True,
    })  # fmt: skip
    bwd = pd.DataFrame({
        "feature_a": backward["best_match"].to_numpy(dtype=np.int64),
        "feature_b": backward.index.to_numpy(dtype=np.int64),
        "similarity_b": backward["similarity"].to_numpy(dtype=np.float64), "backward": True,
    })  # fmt: skip
    both = fwd.merge(bwd, on=["feature_a", "feature_b"], how="outer")
    is_fwd = both["forward"].eq(True).to_numpy()
    is_bwd = both["backward"].eq(True).to_numpy()
    # One similarity per pair (both sides read the same cell of the matrix); take whichever is present.
    similarity = both["similarity"].fillna(both["similarity_b"]).to_numpy(dtype=np.float64)
    direction = np.where(is_fwd & is_bwd, "both", np.where(is_fwd, "forward", "backward"))
    links = pd.DataFrame({
        "feature_a": both["feature_a"].to_numpy(dtype=np.int64),
        "feature_b": both["feature_b"].to_numpy(dtype=np.int64), "similarity": similarity, "direction": direction,
    })  # fmt: skip
    return links.sort_values(["feature_a", "feature_b"], ignore_index=True)


def degrees(links: pd.DataFrame, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """``out(a)`` for every feature of A and ``in(b)`` for every feature of B (links are distinct pairs)."""
    out = np.bincount(links["feature_a"].to_numpy(dtype=np.int64), minlength=n_a)
    into = np.bincount(links["feature_b"].to_numpy(dtype=np.int64), minlength=n_b)
    return out, into


def count_events(links: pd.DataFrame, n_a: int, n_b: int) -> dict[str, int]:
    """How many of each event (:data:`EVENTS`) the links of one pair of hooks imply."""
    out, into = degrees(links, n_a, n_b)
    a, b = links["feature_a"].to_numpy(dtype=np.int64), links["feature_b"].to_numpy(dtype=np.int64)
    return {
        "persist": int(((out[a] == 1) & (into[b] == 1)).sum()),
        "split": int((out >= 2).sum()),
        "merge": int((into >= 2).sum()),
        "birth": int((into == 0).sum()),
        "death": int((out == 0).sum()),
    }


def event_of_links(links: pd.DataFrame, n_a: int, n_b: int) -> np.ndarray:
    """For every link, the event it belongs to: persist, split (a splits), merge (b merges)
    or ``split+merge`` when both ends are shared."""
    out, into = degrees(links, n_a, n_b)
    a, b = links["feature_a"].to_numpy(dtype=np.int64), links["feature_b"].to_numpy(dtype=np.int64)
    split, merge = out[a] >= 2, into[b] >= 2
    return np.select([split & merge, split, merge], ["split+merge", "split", "merge"], default="persist")


class UnionFind:
    """Connected components of the link graph over every (hook, feature) node."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression keeps later finds short
            self.parent[x], x = root, self.parent[x]
        return int(root)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)

    def labels(self) -> np.ndarray:
        """A component id per node, numbered 0, 1, ... in order of each component's first node."""
        roots = np.array([self.find(i) for i in range(len(self.parent))])
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(first))
        return rank[inverse]
