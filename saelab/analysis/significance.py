"""The statistics behind category specialists: AUROC from midranks, label-permutation
p-values with sequential stopping, Benjamini-Hochberg q-values and bootstrap intervals.

Pure numpy and scipy, seeded and reproducible; tested on hand-made matrices with known
answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from jaxtyping import Bool, Float, Int
from scipy.stats import rankdata

from saelab.analysis._checks import as_numpy, check_unit, one_hot

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled

log = logging.getLogger(__name__)

# Besag-Clifford: a (category, feature) pair stops permuting once it has this many
# exceedances; its p-value is then h / l. 10 is the usual choice (Besag & Clifford 1991).
STOP_AFTER_EXCEEDANCES = 10
# The first round of permutations is small because most pairs are noise and reach 10
# exceedances within a few dozen permutations; later rounds grow as pairs drop out.
FIRST_ROUND = 250
# Upper bound on the elements of one permutation block ([permutations, active pairs] and
# [permutations, texts]): about 32 MB in fp32.
MAX_BLOCK_ELEMENTS = 2**23


def midranks(pooled: Pooled) -> Float[np.ndarray, "n_texts d_sae"]:
    """Rank of each text's activation within its feature's column, ties given their mean
    rank (1-based). Sparse features have many exact zeros; midranks count those ties as
    half a win each, which is what AUROC needs."""
    return rankdata(as_numpy(pooled), method="average", axis=0)


def auroc_by_category(
    ranks: Float[np.ndarray, "n_texts d_sae"], codes: Int[np.ndarray, " n_texts"], n_categories: int
) -> Float[np.ndarray, "n_categories d_sae"]:
    """AUROC of each feature for "text is in category c", from midranks over all texts.

    AUROC_c = (sum of the in-category ranks - n_in (n_in + 1) / 2) / (n_in n_out), the
    Mann-Whitney U over n_in n_out; equal to P(a_in > a_out) + 0.5 P(a_in = a_out) for an
    in-category text and an out-of-category text drawn at random. 0.5 means no preference.
    """
    n_in = np.bincount(codes, minlength=n_categories).astype(np.float64)
    n_out = len(codes) - n_in
    if (n_in == 0).any() or (n_out == 0).any():
        raise ValueError("every category needs at least one text inside and one outside it")
    rank_sums = one_hot(codes, n_categories).T @ ranks
    return (rank_sums - (n_in * (n_in + 1) / 2)[:, None]) / (n_in * n_out)[:, None]


class PermutationResult(NamedTuple):
    """One-sided label-permutation test of "ranks are higher inside the category"."""

    p_value: Float[np.ndarray, "n_categories d_sae"]
    n_exceed: Int[np.ndarray, "n_categories d_sae"]
    """Permutations whose in-category rank sum was >= the observed one."""
    n_run: Int[np.ndarray, "n_categories d_sae"]
    """Permutations run for the pair before it stopped (or all of them)."""
    stopped: Bool[np.ndarray, "n_categories d_sae"]
    """Whether the pair stopped early after ``stop_after`` exceedances."""


def permutation_pvalues(
    ranks: Float[np.ndarray, "n_texts d_sae"],
    codes: Int[np.ndarray, " n_texts"],
    categories: Sequence[int],
    *,
    n_permutations: int = 100_000,
    stop_after: int = STOP_AFTER_EXCEEDANCES,
    seed: int = 0,
    max_block: int = MAX_BLOCK_ELEMENTS,
) -> PermutationResult:
    """Label-permutation p-values of the in-category rank sum, with sequential stopping.

    The statistic is the sum of midranks over the texts of category c (equivalent to its
    AUROC). Ranks do not change when labels are permuted, so a block of P permutations is
    one matmul per category, ``[P, n_texts] @ ranks[:, active features]``; each permutation
    shuffles the labels with its own Fisher-Yates pass (``Generator.permuted``). A pair stops at
    the permutation that brings its ``stop_after``-th exceedance (rank sum >= observed),
    after l permutations, with p = stop_after / l (Besag & Clifford 1991, "Sequential Monte
    Carlo p-values"); pairs that never get there run all ``n_permutations`` = P and get the
    usual p = (b + 1) / (P + 1). Noise stops within a few dozen permutations, so
    100,000 permutations (p down to 1e-5, which Benjamini-Hochberg over thousands of
    features needs) cost little. Seeded and reproducible; rows of ``categories`` not
    listed are left at p = 1.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    n_texts, d_sae = ranks.shape
    n_categories = int(codes.max()) + 1
    # Doubled midranks are integers, so rank sums are exact in fp32 while they stay below
    # 2**24; beyond that (thousands of texts) use fp64. Exceedance then means >= obs - 0.5.
    dtype = np.float32 if n_texts * (n_texts + 1) < 2**24 else np.float64
    doubled = np.ascontiguousarray(2 * ranks, dtype=dtype)
    observed = one_hot(codes, n_categories).astype(dtype).T @ doubled
    n_exceed = np.zeros((n_categories, d_sae), dtype=np.int64)
    n_run = np.zeros((n_categories, d_sae), dtype=np.int64)
    active = np.zeros((n_categories, d_sae), dtype=bool)
    active[list(categories)] = True
    rng = np.random.default_rng(seed)
    done, block = 0, FIRST_ROUND
    while done < n_permutations and active.any():
        widest = int(active.sum(axis=1).max())
        block = max(1, min(n_permutations - done, block, max_block // max(widest, n_texts)))
        permuted = rng.permuted(np.tile(codes, (block, 1)), axis=1)
        for c in np.flatnonzero(active.any(axis=1)):
            cols = np.flatnonzero(active[c])
            sums = (permuted == c).astype(dtype) @ doubled[:, cols]
            hits = sums >= observed[c, cols] - 0.5
            _advance(hits, int(c), cols, n_exceed, n_run, active, stop_after)
        done += block
        block *= 4
        log.debug("permutations: %d done, %d pairs still running", done, int(active.sum()))
    stopped = n_exceed >= stop_after
    p_value = np.where(stopped, stop_after / np.maximum(n_run, 1), (n_exceed + 1) / (n_run + 1))
    p_value[np.setdiff1d(np.arange(n_categories), list(categories))] = 1.0
    return PermutationResult(p_value=p_value, n_exceed=n_exceed, n_run=n_run, stopped=stopped)


def _advance(
    hits: Bool[np.ndarray, "block pairs"],
    c: int,
    cols: Int[np.ndarray, " pairs"],
    n_exceed: Int[np.ndarray, "n_categories d_sae"],
    n_run: Int[np.ndarray, "n_categories d_sae"],
    active: Bool[np.ndarray, "n_categories d_sae"],
    stop_after: int,
) -> None:
    """Add one block of exceedance indicators, stopping each pair at the exact permutation
    of its ``stop_after``-th exceedance (so the block size does not change the result)."""
    running = n_exceed[c, cols] + np.cumsum(hits, axis=0, dtype=np.int32)
    reached = running >= stop_after
    stops = reached.any(axis=0)
    first = reached.argmax(axis=0)
    n_run[c, cols] += np.where(stops, first + 1, hits.shape[0])
    n_exceed[c, cols] = np.where(stops, stop_after, running[-1])
    active[c, cols[stops]] = False


def benjamini_hochberg(p_values: Float[np.ndarray, "... m"]) -> Float[np.ndarray, "... m"]:
    """Benjamini-Hochberg q-values along the last axis (each row is one family of m tests).

    With p sorted ascending, q_(i) = min over j >= i of m p_(j) / j, capped at 1; a test is
    significant at FDR alpha when q <= alpha (the same decisions as the BH step-up rule).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        raise ValueError("p_values is empty")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must lie in [0, 1] with no NaN")
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1]
    q = np.empty_like(p)
    np.put_along_axis(q, order, np.minimum(monotone, 1.0), axis=-1)
    return q


class ConfidenceInterval(NamedTuple):
    low: Float[np.ndarray, " k"]
    high: Float[np.ndarray, " k"]


def bootstrap_auroc_ci(
    inside: Float[np.ndarray, "n_in k"],
    outside: Float[np.ndarray, "n_out k"],
    *,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    max_block: int = MAX_BLOCK_ELEMENTS,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of the AUROC of k features at once.

    Stratified: each replicate resamples the in-category texts (n_in of them, with
    replacement) and, separately, the out-of-category texts, so both group sizes are fixed
    as in the data. The same resampled texts serve all k features of a replicate.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    check_unit(confidence, "confidence", low_open=True)
    rng = rng if rng is not None else np.random.default_rng(0)
    n_in, n_out, k = inside.shape[0], outside.shape[0], inside.shape[1]
    per_block = max(1, max_block // ((n_in + n_out) * k))
    replicates = []
    for start in range(0, n_bootstrap, per_block):
        b = min(per_block, n_bootstrap - start)
        sample = np.concatenate(
            [inside[rng.integers(0, n_in, (b, n_in))], outside[rng.integers(0, n_out, (b, n_out))]], axis=1
        )
        in_rank_sums = rankdata(sample, method="average", axis=1)[:, :n_in].sum(axis=1)
        replicates.append((in_rank_sums - n_in * (n_in + 1) / 2) / (n_in * n_out))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.concatenate(replicates), [tail, 100 - tail], axis=0)
    return ConfidenceInterval(low=low, high=high)
