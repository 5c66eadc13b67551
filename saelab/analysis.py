"""Feature analysis on SAE activations: rankings, category specialists with statistics,
co-activation, concept search, layer comparison and top-activating examples.

Most functions take pooled activations ``feats[n_texts, d_sae]`` (torch or numpy; see
:func:`saelab.extract_features`) and return a tidy ``pandas.DataFrame`` with one row per
feature, best first, a 1-based ``rank`` and the integer ``feature`` id. "Active" means
activation > ``threshold`` (0 by default) everywhere.

The rankings answer different questions and are defined so that they cannot collapse into
one another (seed 004 reported the same feature as "most frequent" and "most selective"):

* :func:`strongest`: the largest activation on any text.
* :func:`frequent`: the share of texts on which the feature is active.
* :func:`selective`: strength when active, among features active on *at most*
  ``max_frequency`` of texts; a frequent feature is ineligible by construction.
* :func:`composite`: frequency x strength when active.

:func:`specialists` asks which features prefer one category of texts, with a rank statistic
(AUROC), a label-permutation p-value, Benjamini-Hochberg q-values over all features and a
bootstrap confidence interval; the seed's count-based score is kept beside it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from scipy.stats import rankdata
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract import PerTokenFeatures, extract_features, token_strings
from saelab.saes import hook_layer, sae_hook_name, sae_neuronpedia_url

log = logging.getLogger(__name__)

Feats = Float[Tensor, "n_texts d_sae"] | Float[np.ndarray, "n_texts d_sae"]

# Besag-Clifford: a (category, feature) pair stops permuting once it has this many
# exceedances; its p-value is then h / l. 10 is the usual choice (Besag & Clifford 1991).
STOP_AFTER_EXCEEDANCES = 10
# The first round of permutations is small because most pairs are noise and reach 10
# exceedances within a few dozen permutations; later rounds grow as pairs drop out.
FIRST_ROUND = 250
# Upper bound on the elements of one permutation block ([permutations, active pairs] and
# [permutations, texts]): about 32 MB in fp32.
MAX_BLOCK_ELEMENTS = 2**23


# ---------------------------------------------------------------------------------------
# Input checks.


def _as_numpy(feats: Feats, name: str = "feats") -> Float[np.ndarray, "n_texts d_sae"]:
    """Pooled activations as a float numpy array (float32 unless given float64), checked."""
    if isinstance(feats, Tensor):
        feats = feats.detach().cpu()
        feats = (feats if feats.dtype == torch.float64 else feats.float()).numpy()
    array = np.asarray(feats)
    if array.dtype != np.float64:
        array = array.astype(np.float32, copy=False)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_texts, d_sae], got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); it needs at least one text and one feature")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; pooled activations must be finite")
    return array


def _check_top(top: int, name: str = "top") -> int:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {top!r}")
    return int(top)


def _check_unit(value: float, name: str, *, low_open: bool = False) -> float:
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def _check_feature_ids(features: Iterable[int], d_sae: int) -> list[int]:
    ids = [int(f) for f in features]
    if not ids:
        raise ValueError("features is empty; pass at least one feature id")
    bad = [f for f in ids if not 0 <= f < d_sae]
    if bad:
        raise ValueError(f"feature ids {bad[:10]} are out of range; valid ids are 0..{d_sae - 1}")
    if len(set(ids)) != len(ids):
        raise ValueError("features contains duplicates; pass each feature id once")
    return ids


class _Labels(NamedTuple):
    codes: Int[np.ndarray, " n_texts"]
    """Index into ``names`` for every text."""
    names: list[str]
    """Distinct categories in order of first appearance."""


def _encode_labels(labels: Sequence[str], n_texts: int) -> _Labels:
    if isinstance(labels, str):
        raise ValueError("labels must be a sequence with one category per text, not a single string")
    labels = list(labels)
    if len(labels) != n_texts:
        raise ValueError(f"labels has {len(labels)} entries but feats has {n_texts} texts; they must match")
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=False)
    if (codes < 0).any():
        raise ValueError("labels contains missing values (None/NaN); every text needs a category")
    return _Labels(codes=codes.astype(np.int64), names=[str(u) for u in uniques])


def _select_categories(names: list[str], categories: Sequence[str] | None) -> list[int]:
    if categories is None:
        return list(range(len(names)))
    if isinstance(categories, str):
        categories = [categories]
    unknown = [c for c in categories if c not in names]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; valid: {names}")
    return [names.index(c) for c in categories]


def _ranked(frame: pd.DataFrame, sort_by: list[str], top: int) -> pd.DataFrame:
    """Sort best first (descending on ``sort_by``, then feature id) and add ``rank``."""
    frame = frame.sort_values([*sort_by, "feature"], ascending=[False] * len(sort_by) + [True], kind="stable")
    frame = frame.head(top).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


# ---------------------------------------------------------------------------------------
# Per-feature statistics and the simple rankings.


class ActivityStats(NamedTuple):
    """Per-feature activity over texts, the ingredients of the simple rankings."""

    n_active: Int[np.ndarray, " d_sae"]
    """Texts with activation > threshold."""
    frequency: Float[np.ndarray, " d_sae"]
    """``n_active / n_texts``."""
    mean_when_active: Float[np.ndarray, " d_sae"]
    """Mean activation over the active texts only; 0 for a feature never active."""


def activity(feats: Feats, threshold: float = 0.0) -> ActivityStats:
    """How often and how strongly each feature fires (see :class:`ActivityStats`)."""
    x = _as_numpy(feats)
    active = x > threshold
    n_active = active.sum(axis=0)
    total = np.where(active, x, 0).sum(axis=0, dtype=np.float64)
    mean_when_active = np.divide(total, n_active, out=np.zeros_like(total), where=n_active > 0)
    return ActivityStats(n_active=n_active, frequency=n_active / x.shape[0], mean_when_active=mean_when_active)


def strongest(feats: Feats, top: int = 10) -> pd.DataFrame:
    """Features ranked by their largest activation on any text.

    Columns: ``rank, feature, max_activation`` (max over texts), ``argmax_text`` (index of
    that text; the first one on ties), ``mean_activation`` (mean over all texts) and
    ``frequency`` (share of texts with activation > 0).
    """
    top = _check_top(top)
    x = _as_numpy(feats)
    frame = pd.DataFrame(
        {
            "feature": np.arange(x.shape[1]),
            "max_activation": x.max(axis=0).astype(np.float64),
            "argmax_text": x.argmax(axis=0),
            "mean_activation": x.mean(axis=0, dtype=np.float64),
            "frequency": activity(x).frequency,
        }
    )
    return _ranked(frame, ["max_activation"], top)


def frequent(feats: Feats, top: int = 10, threshold: float = 0.0) -> pd.DataFrame:
    """Features ranked by how many texts they are active on.

    ``frequency`` = share of texts with activation > ``threshold`` (0..1); ``n_active`` the
    count; ``mean_when_active`` the mean activation over those texts (0 if none), which
    breaks ties in frequency.
    """
    top = _check_top(top)
    stats = activity(feats, threshold)
    frame = pd.DataFrame(
        {
            "feature": np.arange(len(stats.n_active)),
            "frequency": stats.frequency,
            "n_active": stats.n_active,
            "mean_when_active": stats.mean_when_active,
        }
    )
    return _ranked(frame, ["frequency", "mean_when_active"], top)


def selective(
    feats: Feats, top: int = 10, max_frequency: float = 0.1, min_active: int = 1, threshold: float = 0.0
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
    top = _check_top(top)
    _check_unit(max_frequency, "max_frequency", low_open=True)
    if isinstance(min_active, bool) or not isinstance(min_active, (int, np.integer)) or min_active < 1:
        raise ValueError(f"min_active must be an integer >= 1, got {min_active!r}")
    x = _as_numpy(feats)
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
    )[eligible]
    return _ranked(frame, ["mean_when_active", "max_activation"], top)


def composite(feats: Feats, top: int = 10, threshold: float = 0.0) -> pd.DataFrame:
    """Features ranked by ``score = frequency x mean_when_active``.

    That is the sum of the above-threshold activations divided by the number of texts. With
    ``threshold=0`` and non-negative activations (ReLU, JumpReLU and TopK SAEs) it equals the
    plain mean activation over all texts. Columns: ``rank, feature, score, frequency,
    mean_when_active``.
    """
    top = _check_top(top)
    stats = activity(feats, threshold)
    frame = pd.DataFrame(
        {
            "feature": np.arange(len(stats.n_active)),
            "score": stats.frequency * stats.mean_when_active,
            "frequency": stats.frequency,
            "mean_when_active": stats.mean_when_active,
        }
    )
    return _ranked(frame, ["score"], top)


# ---------------------------------------------------------------------------------------
# Specialist statistics: AUROC from midranks, permutation p-values, BH, bootstrap.


def midranks(feats: Feats) -> Float[np.ndarray, "n_texts d_sae"]:
    """Rank of each text's activation within its feature's column, ties given their mean
    rank (1-based). Sparse features have many exact zeros; midranks count those ties as
    half a win each, which is what AUROC needs."""
    return rankdata(_as_numpy(feats), method="average", axis=0)


def _one_hot(codes: Int[np.ndarray, " n_texts"], n_categories: int) -> Float[np.ndarray, "n_texts n_categories"]:
    return (codes[:, None] == np.arange(n_categories)[None, :]).astype(np.float64)


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
    rank_sums = _one_hot(codes, n_categories).T @ ranks
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
    one matmul per category, ``[P, n_texts] @ ranks[:, active features]``. A pair stops at
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
    dtype = torch.float32 if n_texts * (n_texts + 1) < 2**24 else torch.float64
    doubled = torch.from_numpy(np.ascontiguousarray(2 * ranks)).to(dtype)
    codes_t = torch.from_numpy(codes)
    observed = torch.from_numpy(_one_hot(codes, n_categories)).to(dtype).T @ doubled
    n_exceed = torch.zeros(n_categories, d_sae, dtype=torch.long)
    n_run = torch.zeros(n_categories, d_sae, dtype=torch.long)
    active = torch.zeros(n_categories, d_sae, dtype=torch.bool)
    active[list(categories)] = True
    generator = torch.Generator().manual_seed(seed)
    done, block = 0, FIRST_ROUND
    while done < n_permutations and active.any():
        widest = int(active.sum(dim=1).max())
        block = max(1, min(n_permutations - done, block, max_block // max(widest, n_texts)))
        permuted = codes_t[torch.rand(block, n_texts, generator=generator).argsort(dim=1)]
        for c in active.any(dim=1).nonzero().flatten().tolist():
            cols = active[c].nonzero().flatten()
            sums = (permuted == c).to(dtype) @ doubled[:, cols]
            hits = sums >= observed[c, cols] - 0.5
            _advance(hits, c, cols, n_exceed, n_run, active, stop_after)
        done += block
        block *= 4
        log.debug("permutations: %d done, %d pairs still running", done, int(active.sum()))
    stopped = (n_exceed >= stop_after).numpy()
    n_exceed, n_run = n_exceed.numpy(), n_run.numpy()
    p_value = np.where(stopped, stop_after / np.maximum(n_run, 1), (n_exceed + 1) / (n_run + 1))
    p_value[np.setdiff1d(np.arange(n_categories), list(categories))] = 1.0
    return PermutationResult(p_value=p_value, n_exceed=n_exceed, n_run=n_run, stopped=stopped)


def _advance(
    hits: Bool[Tensor, "block pairs"],
    c: int,
    cols: Int[Tensor, " pairs"],
    n_exceed: Int[Tensor, "n_categories d_sae"],
    n_run: Int[Tensor, "n_categories d_sae"],
    active: Bool[Tensor, "n_categories d_sae"],
    stop_after: int,
) -> None:
    """Add one block of exceedance indicators, stopping each pair at the exact permutation
    of its ``stop_after``-th exceedance (so the block size does not change the result)."""
    running = n_exceed[c, cols] + torch.cumsum(hits, dim=0, dtype=torch.int32)
    reached = running >= stop_after
    stops = reached.any(dim=0)
    first = reached.to(torch.uint8).argmax(dim=0)
    n_run[c, cols] += torch.where(stops, first + 1, hits.shape[0])
    n_exceed[c, cols] = torch.where(stops, stop_after, running[-1].long())
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
    _check_unit(confidence, "confidence", low_open=True)
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


class SeedScores(NamedTuple):
    """Seed 004's count-based specialist score, per (category, feature)."""

    n_strong_in: Int[np.ndarray, "n_categories d_sae"]
    n_strong_out: Int[np.ndarray, "n_categories d_sae"]


def seed_scores(
    feats: Feats, codes: Int[np.ndarray, " n_texts"], n_categories: int, rel_strong: float = 0.5
) -> SeedScores:
    """Texts on which each feature is "strong" (activation > 0 and >= ``rel_strong`` x its
    max over all texts), counted inside and outside each category. Seed 004's specialist
    score is ``n_strong_in - n_strong_out``."""
    x = _as_numpy(feats)
    strong = ((x > 0) & (x >= rel_strong * x.max(axis=0, keepdims=True))).astype(np.int64)
    n_strong_in = _one_hot(codes, n_categories).astype(np.int64).T @ strong
    return SeedScores(n_strong_in=n_strong_in, n_strong_out=strong.sum(axis=0)[None, :] - n_strong_in)


def specialists(
    feats: Feats,
    labels: Sequence[str],
    *,
    top: int = 5,
    n_permutations: int | None = None,
    alpha: float = 0.05,
    min_auroc: float = 0.8,
    rel_strong: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Features that prefer one category of texts, with statistics.

    For each category c (texts labelled c against all other texts) and every feature:

    * ``auroc``: P(a_in > a_out) + 0.5 P(a_in = a_out) for a random in-category and
      out-of-category text, from midranks (:func:`auroc_by_category`).
    * ``effect_size``: Cliff's delta = 2 auroc - 1 (-1..1).
    * ``p_value``: one-sided label-permutation p-value for "higher inside the category"
      with Besag-Clifford sequential stopping (:func:`permutation_pvalues`).
    * ``q_value``: Benjamini-Hochberg over all d_sae features within the category.
    * ``ci_low``, ``ci_high``: stratified percentile bootstrap interval of the AUROC
      (``confidence``, 95% by default; reported rows only; NaN when ``n_bootstrap=0``).
    * ``seed_score`` = ``n_strong_in - n_strong_out`` (:func:`seed_scores`), with
      ``n_in``/``n_out`` texts inside/outside and ``mean_in``/``mean_out`` activations.
    * ``is_specialist``: q_value < alpha and auroc >= min_auroc and mean_in > mean_out.
    * ``n_permutations_run``: permutations the pair needed before it stopped.

    Returns one row per (category, feature) for the ``top`` features of each category by
    AUROC (ties: seed_score, then feature id), categories in order of first appearance in
    ``labels`` (or as given in ``categories``), with a 1-based ``rank`` within the category.

    Resolution: the smallest p-value is 1 / (n_permutations + 1), so a category's *only*
    specialist reaches q < alpha only when n_permutations >= d_sae / alpha (92,160 for
    4,608 features; about 492,000 for GPT-2's 24,576). Several strong specialists in one
    category share the BH budget and need fewer. ``n_permutations=None`` therefore picks
    :func:`default_permutations` (twice that bound, at least 100,000); sequential stopping
    means only the strongest pairs ever run that many.
    """
    top = _check_top(top)
    _check_unit(alpha, "alpha", low_open=True)
    _check_unit(min_auroc, "min_auroc")
    _check_unit(rel_strong, "rel_strong", low_open=True)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0 (0 skips the intervals), got {n_bootstrap}")
    x = _as_numpy(feats)
    n_permutations = default_permutations(x.shape[1], alpha) if n_permutations is None else n_permutations
    lab = _encode_labels(labels, x.shape[0])
    if len(lab.names) < 2:
        raise ValueError(f"specialists needs at least two categories in labels, got {lab.names}")
    chosen = _select_categories(lab.names, categories)
    stats = _pair_statistics(x, lab, chosen, n_permutations=n_permutations, rel_strong=rel_strong, seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    for c in chosen:
        # Best first by AUROC, ties by seed_score, then by feature id (lexsort: last key first).
        order = np.lexsort((np.arange(x.shape[1]), -stats["seed_score"][c], -stats["auroc"][c]))[:top]
        frame = pd.DataFrame({name: values[c, order] for name, values in stats.items()})
        frame.insert(0, "category", lab.names[c])
        frame.insert(1, "rank", np.arange(1, len(order) + 1))
        frame.insert(2, "feature", order)
        frame["ci_low"], frame["ci_high"] = np.nan, np.nan
        if n_bootstrap:
            inside, outside = x[lab.codes == c][:, order], x[lab.codes != c][:, order]
            ci = bootstrap_auroc_ci(inside, outside, n_bootstrap=n_bootstrap, confidence=confidence, rng=rng)
            frame["ci_low"], frame["ci_high"] = ci.low, ci.high
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["is_specialist"] = (table.q_value < alpha) & (table.auroc >= min_auroc) & (table.mean_in > table.mean_out)
    return table[_SPECIALIST_COLUMNS]


def default_permutations(d_sae: int, alpha: float = 0.05) -> int:
    """Permutations that let a lone specialist among ``d_sae`` features reach q < alpha
    with room to spare: ``max(100_000, ceil(2 d_sae / alpha))``."""
    return max(100_000, math.ceil(2 * d_sae / alpha))


def _pair_statistics(
    x: Float[np.ndarray, "n_texts d_sae"],
    lab: _Labels,
    chosen: list[int],
    *,
    n_permutations: int,
    rel_strong: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """Every per-(category, feature) column of the specialists table, each [n_categories, d_sae]."""
    n_cat = len(lab.names)
    ranks = midranks(x)
    auroc = auroc_by_category(ranks, lab.codes, n_cat)
    perm = permutation_pvalues(ranks, lab.codes, chosen, n_permutations=n_permutations, seed=seed)
    strong = seed_scores(x, lab.codes, n_cat, rel_strong)
    one_hot = _one_hot(lab.codes, n_cat)
    n_in = one_hot.sum(axis=0)[:, None]
    n_out = len(x) - n_in
    sum_in = one_hot.T @ x
    ones = np.ones((1, x.shape[1]))
    return {
        "seed_score": strong.n_strong_in - strong.n_strong_out,
        "n_strong_in": strong.n_strong_in,
        "n_strong_out": strong.n_strong_out,
        "n_in": (n_in * ones).astype(np.int64),
        "n_out": (n_out * ones).astype(np.int64),
        "mean_in": sum_in / n_in,
        "mean_out": (x.sum(axis=0, dtype=np.float64)[None, :] - sum_in) / n_out,
        "auroc": auroc,
        "effect_size": 2 * auroc - 1,
        "p_value": perm.p_value,
        "q_value": benjamini_hochberg(perm.p_value),
        "n_permutations_run": perm.n_run,
    }


_SPECIALIST_COLUMNS = [
    "category", "rank", "feature", "seed_score", "n_strong_in", "n_strong_out", "n_in", "n_out",
    "mean_in", "mean_out", "auroc", "effect_size", "p_value", "q_value", "ci_low", "ci_high",
    "is_specialist", "n_permutations_run",
]  # fmt: skip

_LOWER_IS_BETTER = {"p_value", "q_value"}


def specialist_matrix(table: pd.DataFrame, value: str = "seed_score") -> pd.DataFrame:
    """Best ``value`` per category from a :func:`specialists` table (max; min for p/q-values).

    Index ``category`` (order of appearance), columns ``value`` and ``feature`` (the feature
    that has it). Among each category's reported rows, i.e. its top features by AUROC.
    """
    missing = {"category", "feature", value} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}; pass a DataFrame from specialists()")
    if table.empty:
        raise ValueError("table is empty")
    ascending = value in _LOWER_IS_BETTER
    best = table.sort_values([value, "rank"], ascending=[ascending, True], kind="stable").drop_duplicates("category")
    order = pd.unique(table["category"])
    return best.set_index("category").loc[order, [value, "feature"]]


# ---------------------------------------------------------------------------------------
# Co-activation and concept search.


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
    feats: Feats, features: Sequence[int] | None = None, threshold: float = 0.0, top: int = 20
) -> CoActivation:
    """Co-activation of ``features`` (default: the ``top`` most frequent) over texts; the
    ``top`` pairs with the highest Jaccard similarity are listed in ``pairs``."""
    top = _check_top(top)
    x = _as_numpy(feats)
    if features is None:
        ids = frequent(x, top=top, threshold=threshold)["feature"].tolist()
    else:
        ids = _check_feature_ids(features, x.shape[1])
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


def concept_search(
    example_feats: Feats, background_feats: Feats | None = None, top: int = 10, threshold: float = 0.0
) -> pd.DataFrame:
    """Features that fire on a few example texts of a concept, weighted by strength.

    ``score = mean_on_examples x frac_examples_active - mean_background``, where
    ``mean_on_examples`` is the mean activation over the examples, ``frac_examples_active``
    the share of examples with activation > ``threshold``, and ``mean_background`` the mean
    activation over ``background_feats`` (0 when none is given), so features that fire on
    everything are pushed down. Columns: ``rank, feature, score, mean_on_examples,
    frac_examples_active, mean_background``.
    """
    top = _check_top(top)
    ex = _as_numpy(example_feats, "example_feats")
    mean_on = ex.mean(axis=0, dtype=np.float64)
    frac = (ex > threshold).mean(axis=0)
    if background_feats is None:
        mean_bg = np.zeros_like(mean_on)
    else:
        bg = _as_numpy(background_feats, "background_feats")
        if bg.shape[1] != ex.shape[1]:
            raise ValueError(
                f"background_feats has {bg.shape[1]} features but example_feats has {ex.shape[1]}; use the same SAE"
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
    return _ranked(frame, ["score"], top)


# ---------------------------------------------------------------------------------------
# Layer comparison.


@dataclass(frozen=True)
class LayerComparison:
    """The same analyses run on several SAEs (typically one per layer) over the same texts."""

    summary: pd.DataFrame
    """One row per SAE (index ``sae``, in the given order): ``strongest_feature,
    strongest_value`` (max activation), ``frequent_feature, frequent_coverage`` (share of
    texts active), ``selective_feature, selective_value`` (mean when active; <NA>/NaN when no
    feature is eligible), ``n_specialist_categories`` (categories with at least one
    ``is_specialist`` row), ``n_categories``, ``best_category, best_category_score`` (the
    category with the highest best seed_score, first one on ties)."""
    specialists: pd.DataFrame
    """:func:`specialists` rows of every SAE, with an ``sae`` column first."""
    scores: pd.DataFrame
    """Best seed_score among each category's reported specialists: category x sae."""
    counts: pd.Series
    """sae -> number of categories with at least one specialist."""
    strongest: pd.DataFrame
    """Columns ``sae, rank, feature, max_activation``: the top 5 per SAE."""
    frequent: pd.DataFrame
    """Columns ``sae, rank, feature, frequency``: the top 5 per SAE."""


def compare_layers(
    feats_by_sae: Mapping[str, Feats], labels: Sequence[str], **specialist_kwargs: Any
) -> LayerComparison:
    """Run strongest / frequent / selective / specialists on each SAE's pooled activations
    (all over the same texts and ``labels``) and line the results up per SAE.
    ``specialist_kwargs`` go to :func:`specialists`."""
    if not feats_by_sae:
        raise ValueError("feats_by_sae is empty; pass {sae_name: pooled activations}")
    names = list(feats_by_sae)
    tables, summaries, strong, freq = [], [], [], []
    for name in names:
        x = _as_numpy(feats_by_sae[name], f"feats_by_sae[{name!r}]")
        table = specialists(x, labels, **specialist_kwargs)
        tables.append(table.assign(sae=name))
        strong.append(strongest(x, top=5)[["rank", "feature", "max_activation"]].assign(sae=name))
        freq.append(frequent(x, top=5)[["rank", "feature", "frequency"]].assign(sae=name))
        summaries.append(_layer_summary(x, table))
    long = pd.concat(tables, ignore_index=True)
    scores = pd.concat({n: specialist_matrix(t)["seed_score"] for n, t in zip(names, tables)}, axis=1)
    scores.columns.name = "sae"
    counts = pd.Series([s["n_specialist_categories"] for s in summaries], index=pd.Index(names, name="sae"),
                       name="n_specialist_categories")  # fmt: skip
    summary = pd.DataFrame(summaries, index=pd.Index(names, name="sae"))
    for column in ("strongest_feature", "frequent_feature", "selective_feature"):
        summary[column] = summary[column].astype("Int64")
    return LayerComparison(
        summary=summary,
        specialists=long[["sae", *_SPECIALIST_COLUMNS]],
        scores=scores,
        counts=counts,
        strongest=_sae_first(strong),
        frequent=_sae_first(freq),
    )


def _sae_first(frames: list[pd.DataFrame]) -> pd.DataFrame:
    long = pd.concat(frames, ignore_index=True)
    return long[["sae", *long.columns.drop("sae")]]


def _layer_summary(x: Float[np.ndarray, "n_texts d_sae"], table: pd.DataFrame) -> dict[str, Any]:
    top_strong = strongest(x, top=1).iloc[0]
    top_freq = frequent(x, top=1).iloc[0]
    top_sel = selective(x, top=1)
    best = specialist_matrix(table)["seed_score"]
    return {
        "strongest_feature": int(top_strong.feature),
        "strongest_value": float(top_strong.max_activation),
        "frequent_feature": int(top_freq.feature),
        "frequent_coverage": float(top_freq.frequency),
        "selective_feature": int(top_sel.feature.iloc[0]) if len(top_sel) else pd.NA,
        "selective_value": float(top_sel.mean_when_active.iloc[0]) if len(top_sel) else np.nan,
        "n_specialist_categories": int(table.loc[table.is_specialist, "category"].nunique()),
        "n_categories": int(table["category"].nunique()),
        "best_category": str(best.idxmax()),
        "best_category_score": float(best.max()),
    }


# ---------------------------------------------------------------------------------------
# Top-activating examples, streamed.


@dataclass(frozen=True)
class TopExamples:
    """The k highest-activating tokens of each requested feature, with context windows."""

    frame: pd.DataFrame
    """Columns ``feature, rank, value, text_index`` (position of the text in the stream),
    ``position`` (index into that text's tokens as :class:`~saelab.extract.PerTokenFeatures`
    keeps them, i.e. after BOS when BOS is excluded), ``token``, ``context_tokens``,
    ``context_values`` (this feature's activation on each context token), ``left, right``
    (context tokens before / after). Only active tokens (value > 0) are listed, so a feature
    has fewer than k rows when it fires on fewer tokens. Ties keep the earliest token."""
    features: list[int]
    k: int
    window: tuple[int, int]

    def for_feature(self, feature: int) -> pd.DataFrame:
        """Rows of one requested feature, best first."""
        if int(feature) not in self.features:
            raise ValueError(f"feature {feature} was not requested; requested: {self.features}")
        return self.frame[self.frame.feature == int(feature)].reset_index(drop=True)


class _Context(NamedTuple):
    """One example's context window, cut while its chunk was in memory."""

    tokens: list[str]
    values: list[float]
    left: int
    right: int


_Contexts = dict[tuple[int, int, int], _Context]
"""(feature slot, text index, position) -> context window."""


class _RunningTopK(NamedTuple):
    values: Float[Tensor, "k n_features"]
    text: Int[Tensor, "k n_features"]
    position: Int[Tensor, "k n_features"]


def top_examples(
    model: HookedTransformer,
    sae: SAE,
    texts: Iterable[str],
    features: Sequence[int],
    *,
    k: int = 10,
    window: tuple[int, int] = (8, 4),
    batch_size: int = 16,
    progress: bool = True,
    chunk_size: int | None = None,
) -> TopExamples:
    """Stream ``texts`` (any iterable, e.g. a generator over a corpus) through
    :func:`~saelab.extract.extract_features` with ``pooling=None``, ``chunk_size`` texts at a
    time (default ``4 x batch_size``), and keep only the running top-k tokens per feature
    plus their context windows: memory O(len(features) x k x window), whatever the corpus.
    ``window = (before, after)`` context tokens around each example.
    """
    k = _check_top(k, "k")
    ids = _check_feature_ids(features, sae.cfg.d_sae)
    if len(window) != 2 or any(not isinstance(w, (int, np.integer)) or w < 0 for w in window):
        raise ValueError(f"window must be (before, after) with non-negative integers, got {window!r}")
    chunk_size = _check_top(chunk_size if chunk_size is not None else 4 * batch_size, "chunk_size")
    slot_of = torch.full((sae.cfg.d_sae,), -1, dtype=torch.long)
    slot_of[ids] = torch.arange(len(ids))
    state = _RunningTopK(
        values=torch.full((k, len(ids)), -torch.inf),
        text=torch.full((k, len(ids)), -1, dtype=torch.long),
        position=torch.full((k, len(ids)), -1, dtype=torch.long),
    )
    contexts: _Contexts = {}
    iterator, offset = iter(texts), 0
    total = len(texts) if isinstance(texts, Sequence) else None
    with tqdm(total=total, desc="top examples", disable=not progress, leave=False, unit="text") as bar:
        while chunk := list(itertools.islice(iterator, chunk_size)):
            per_token = extract_features(model, sae, chunk, pooling=None, batch_size=batch_size, progress=False)
            block = _feature_block(per_token, slot_of, len(ids))
            state, new = _merge_top_k(state, block, per_token, offset)
            contexts = _update_contexts(contexts, state, new, block, per_token, offset, tuple(window))
            offset += len(chunk)
            bar.update(len(chunk))
    if offset == 0:
        raise ValueError("texts is empty; pass at least one text")
    return TopExamples(frame=_examples_frame(state, contexts, ids), features=ids, k=k, window=tuple(window))


def _feature_block(
    per_token: PerTokenFeatures, slot_of: Int[Tensor, " d_sae"], n_slots: int
) -> Float[Tensor, "rows n_features"]:
    """Dense activations of the requested features on every kept token of a chunk."""
    n_rows = per_token.row_ptr.numel() - 1
    row_of_nz = torch.repeat_interleave(torch.arange(n_rows), per_token.row_ptr[1:] - per_token.row_ptr[:-1])
    slots = slot_of[per_token.feature_idx]
    keep = slots >= 0
    block = torch.zeros(n_rows, n_slots)
    block[row_of_nz[keep], slots[keep]] = per_token.values[keep].float()
    return block


def _row_text_position(per_token: PerTokenFeatures) -> tuple[Int[Tensor, " rows"], Int[Tensor, " rows"]]:
    starts = per_token.text_row_start
    text = torch.repeat_interleave(torch.arange(per_token.n_texts), starts[1:] - starts[:-1])
    return text, torch.arange(int(starts[-1])) - starts[text]


def _merge_top_k(
    state: _RunningTopK, block: Float[Tensor, "rows n_features"], per_token: PerTokenFeatures, offset: int
) -> tuple[_RunningTopK, Bool[Tensor, "k n_features"]]:
    """Merge a chunk into the running top-k. A stable sort with the running entries first
    makes ties go to the earliest token, so the result does not depend on the chunk size.
    Returns the new state and which of its entries came from this chunk."""
    k, n_features = state.values.shape
    text, position = _row_text_position(per_token)
    values = torch.cat([state.values, block])
    order = torch.sort(values, dim=0, descending=True, stable=True).indices[:k]
    texts = torch.cat([state.text, (text + offset)[:, None].expand(-1, n_features)])
    positions = torch.cat([state.position, position[:, None].expand(-1, n_features)])
    merged = _RunningTopK(values.gather(0, order), texts.gather(0, order), positions.gather(0, order))
    return merged, (order >= k) & (merged.values > 0)


def _update_contexts(
    contexts: _Contexts,
    state: _RunningTopK,
    new: Bool[Tensor, "k n_features"],
    block: Float[Tensor, "rows n_features"],
    per_token: PerTokenFeatures,
    offset: int,
    window: tuple[int, int],
) -> _Contexts:
    """Keep the context windows of entries still in the top-k; cut those of new entries
    while their chunk is at hand (the stream is not kept)."""
    kept = {}
    for rank, slot in (state.values > 0).nonzero().tolist():
        key = (slot, int(state.text[rank, slot]), int(state.position[rank, slot]))
        if not new[rank, slot]:
            kept[key] = contexts[key]
            continue
        local, pos = key[1] - offset, key[2]
        length = len(per_token.tokens[local])
        left, right = min(window[0], pos), min(window[1], length - 1 - pos)
        start = int(per_token.text_row_start[local])
        values = block[start + pos - left : start + pos + right + 1, slot].tolist()
        kept[key] = _Context(per_token.tokens[local][pos - left : pos + right + 1], values, left, right)
    return kept


def _examples_frame(
    state: _RunningTopK, contexts: _Contexts, ids: list[int]
) -> pd.DataFrame:
    rows = []
    for slot, feature in enumerate(ids):
        for rank in range(state.values.shape[0]):
            value = float(state.values[rank, slot])
            if value <= 0:
                break
            text, pos = int(state.text[rank, slot]), int(state.position[rank, slot])
            ctx = contexts[(slot, text, pos)]
            token = ctx.tokens[ctx.left]
            rows.append((feature, rank + 1, value, text, pos, token, ctx.tokens, ctx.values, ctx.left, ctx.right))
    return pd.DataFrame(rows, columns=_EXAMPLE_COLUMNS)


_EXAMPLE_COLUMNS = [
    "feature", "rank", "value", "text_index", "position", "token", "context_tokens", "context_values", "left", "right",
]  # fmt: skip


def token_profile(per_token: PerTokenFeatures, feature: int, top: int = 10) -> pd.DataFrame:
    """Which token strings carry a feature's activation: the question behind seed 004's
    finding that "specialists" detect syntax (``+``, ``=``, ``):``) rather than topics.

    Over every kept token of ``per_token``, grouped by token string: ``n_active`` (occurrences
    where the feature fires), ``n_total`` (occurrences), ``frac_active`` (their ratio),
    ``mean_when_active``, ``total`` (summed activation) and ``share`` (``total`` over the
    feature's total activation on all tokens). Ranked by ``total``; only tokens where it fires.
    """
    top = _check_top(top)
    per_token._check_feature(feature)
    flat = [tok for toks in per_token.tokens for tok in toks]
    if not flat:
        raise ValueError("per_token holds no tokens")
    codes, names = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    values = torch.cat(per_token.feature(feature)).double().numpy()
    active = values > 0
    n_types = len(names)
    n_active = np.bincount(codes, weights=active, minlength=n_types)
    total = np.bincount(codes, weights=np.where(active, values, 0.0), minlength=n_types)
    grand = total.sum()
    frame = pd.DataFrame(
        {
            "feature": feature,
            "token": [str(t) for t in names],
            "n_active": n_active.astype(np.int64),
            "n_total": np.bincount(codes, minlength=n_types),
            "mean_when_active": np.divide(total, n_active, out=np.zeros(n_types), where=n_active > 0),
            "total": total,
            "share": total / grand if grand > 0 else np.zeros(n_types),
        }
    )
    frame["frac_active"] = frame.n_active / frame.n_total
    frame = frame[frame.n_active > 0]
    out = _ranked(frame, ["total"], top)
    return out[["rank", "feature", "token", "n_active", "n_total", "frac_active", "mean_when_active", "total", "share"]]


# ---------------------------------------------------------------------------------------
# One feature at a glance.


class Histogram(NamedTuple):
    counts: Int[np.ndarray, " bins"]
    edges: Float[np.ndarray, " bins_plus_1"]


@dataclass(frozen=True)
class FeatureSummary:
    """Everything the feature explorer shows about one feature."""

    feature: int
    hook: str
    d_sae: int
    density: float | None
    """Fraction of tokens on which the feature is active (> 0), from ``per_token``; None
    without it."""
    histogram: Histogram | None
    """(counts, edges) of the non-zero per-token activations (pooled ones when only
    ``pooled`` is given); None when neither is given."""
    logit_lens: pd.DataFrame | None
    """Columns ``direction`` ("promoted"/"suppressed"), ``rank, token, token_id, logit``:
    the tokens whose logits the feature's decoder direction raises / lowers most, i.e.
    ``W_dec[f] @ W_U`` (times ln_final's weight first when the model keeps it unfolded;
    the unembedding bias is left out, as it does not depend on the feature). None without
    a model."""
    category_means: pd.DataFrame | None
    """Columns ``category, mean, frac_active`` (pooled activation per category, share of the
    category's texts with activation > 0); None unless ``pooled`` and ``labels`` are given."""
    neuronpedia_url: str | None


def feature_summary(
    sae: SAE,
    feature: int,
    pooled: Feats | None = None,
    per_token: PerTokenFeatures | None = None,
    model: HookedTransformer | None = None,
    *,
    labels: Sequence[str] | None = None,
    bins: int = 30,
    top_tokens: int = 10,
) -> FeatureSummary:
    """Density, activation histogram, logit lens, category means and Neuronpedia link of
    one feature (each part only when its inputs are given)."""
    d_sae = int(sae.cfg.d_sae)
    feature = _check_feature_ids([feature], d_sae)[0]
    bins, top_tokens = _check_top(bins, "bins"), _check_top(top_tokens, "top_tokens")
    column = None if pooled is None else _pooled_column(pooled, feature, d_sae)
    if labels is not None and column is None:
        raise ValueError("labels were given without pooled activations; pass pooled=[n_texts, d_sae] too")
    values = _per_token_values(per_token, feature, d_sae) if per_token is not None else None
    source = values if values is not None else (column[column != 0] if column is not None else None)
    return FeatureSummary(
        feature=feature,
        hook=sae_hook_name(sae),
        d_sae=d_sae,
        density=None if values is None else float(values.size / max(1, per_token.row_ptr.numel() - 1)),
        histogram=None if source is None else Histogram(*np.histogram(source, bins=bins)),
        logit_lens=None if model is None else logit_lens(model, sae, feature, top=top_tokens),
        category_means=None if labels is None else category_means(column, labels),
        neuronpedia_url=sae_neuronpedia_url(sae, feature),
    )


def _pooled_column(pooled: Feats, feature: int, d_sae: int) -> Float[np.ndarray, " n_texts"]:
    x = _as_numpy(pooled, "pooled")
    if x.shape[1] != d_sae:
        raise ValueError(f"pooled has {x.shape[1]} features but the SAE has {d_sae}; use this SAE's activations")
    return x[:, feature]


def _per_token_values(per_token: PerTokenFeatures, feature: int, d_sae: int) -> Float[np.ndarray, " n_active"]:
    if per_token.d_sae != d_sae:
        raise ValueError(
            f"per_token has {per_token.d_sae} features but the SAE has {d_sae}; use this SAE's activations"
        )
    values = per_token.values[per_token.feature_idx == feature].float().numpy()
    return values[values > 0]


def category_means(column: Float[np.ndarray, " n_texts"], labels: Sequence[str]) -> pd.DataFrame:
    """Mean pooled activation of one feature per category, and the share of the category's
    texts where it is active (> 0). Categories in order of first appearance."""
    lab = _encode_labels(labels, len(column))
    one_hot = _one_hot(lab.codes, len(lab.names))
    n_texts = one_hot.sum(axis=0)
    return pd.DataFrame(
        {
            "category": lab.names,
            "mean": (one_hot.T @ column) / n_texts,
            "frac_active": (one_hot.T @ (column > 0)) / n_texts,
        }
    )


def logit_lens(model: HookedTransformer, sae: SAE, feature: int, top: int = 10) -> pd.DataFrame:
    """Tokens whose logits feature ``feature``'s decoder direction raises and lowers most
    (see :attr:`FeatureSummary.logit_lens`)."""
    if sae.cfg.d_in != model.cfg.d_model:
        raise ValueError(f"SAE d_in={sae.cfg.d_in} does not match the model's d_model={model.cfg.d_model}")
    w_u = model.W_U.detach()
    direction = sae.W_dec[feature].detach().to(device=w_u.device, dtype=w_u.dtype)
    ln_weight = getattr(model.ln_final, "w", None)
    if ln_weight is not None:
        # Unfolded LayerNorm/RMSNorm scales each dimension before W_U (fold_ln=True puts
        # this weight into W_U instead, and then the model has no .w here).
        direction = direction * ln_weight.detach()
    with torch.inference_mode():
        logits = (direction @ w_u).float().cpu()
    top = min(top, logits.numel())
    frames = []
    for name, picked in (("promoted", logits.topk(top)), ("suppressed", (-logits).topk(top))):
        ids = picked.indices
        frames.append(
            pd.DataFrame(
                {
                    "direction": name,
                    "rank": np.arange(1, top + 1),
                    "token": token_strings(model, ids.tolist(), contiguous=False),
                    "token_id": ids.numpy(),
                    "logit": logits[ids].numpy().astype(np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def neuronpedia_link(sae: SAE, feature: int) -> str | None:
    """The feature's Neuronpedia page, or None when the SAE has no Neuronpedia id (e.g. the
    bundled offline suite)."""
    return sae_neuronpedia_url(sae, _check_feature_ids([feature], int(sae.cfg.d_sae))[0])


# ---------------------------------------------------------------------------------------
# How the layer comparison changes with depth, in words computed from the numbers.

_TREND_METRICS = {
    "n_specialist_categories": "the number of categories with at least one significant specialist",
    "mean_best_auroc": "the mean over categories of the best specialist's AUROC",
    "frequent_coverage": "the share of texts the most frequent feature fires on",
    "strongest_value": "the largest pooled activation of any feature",
}


def layer_trends(comparison: LayerComparison, depth: Mapping[str, float] | None = None) -> pd.DataFrame:
    """How each headline number of a :class:`LayerComparison` moves with depth.

    ``depth`` maps SAE name to layer; by default the layer is read from the hook name
    (``blocks.L.*``), else the given order is used. One row per metric: ``metric,
    description, first_sae, last_sae, first, last, change`` (last - first), ``spearman``
    (rank correlation with depth; NaN when either side is constant) and ``trend``: "rises"
    or "falls" when every step goes the same way, "rises overall" / "falls overall" when
    last and first differ but the path is not monotone, "stays flat" when last equals first,
    "stays about flat" when they differ by at most :data:`FLAT_TOLERANCE` of the larger.
    """
    names = list(comparison.summary.index)
    if len(names) < 2:
        raise ValueError("layer_trends needs at least two SAEs to compare")
    order = _depth_order(names, depth)
    best_auroc = comparison.specialists.groupby(["sae", "category"], sort=False)["auroc"].max()
    values = comparison.summary.assign(mean_best_auroc=best_auroc.groupby(level="sae", sort=False).mean())
    rows = []
    for metric, description in _TREND_METRICS.items():
        series = values.loc[order, metric].astype(float).to_numpy()
        rows.append({
            "metric": metric,
            "description": description,
            "first_sae": order[0],
            "last_sae": order[-1],
            "first": series[0],
            "last": series[-1],
            "change": series[-1] - series[0],
            "spearman": _spearman(np.arange(len(series)), series),
            "trend": _trend_word(series),
        })  # fmt: skip
    return pd.DataFrame(rows)


def describe_trends(trends: pd.DataFrame) -> list[str]:
    """One sentence per row of :func:`layer_trends`, e.g. "The share of texts the most
    frequent feature fires on falls: 0.61 at blocks.15.hook_resid_pre -> 0.43 at
    blocks.28.hook_resid_pre (Spearman -1.00)."."""
    sentences = []
    for row in trends.itertuples():
        rho = "" if np.isnan(row.spearman) else f" (Spearman {row.spearman:+.2f})"
        sentences.append(
            f"{row.description[0].upper()}{row.description[1:]} {row.trend}: {row.first:.3g} at {row.first_sae}"
            f" -> {row.last:.3g} at {row.last_sae}{rho}."
        )
    return sentences


def _depth_order(names: list[str], depth: Mapping[str, float] | None) -> list[str]:
    if depth is None:
        layers = {name: hook_layer(name) for name in names}
        if any(layer is None for layer in layers.values()):
            return names
        depth = layers
    missing = [name for name in names if name not in depth]
    if missing:
        raise ValueError(f"depth has no entry for {missing}; give one per SAE in the comparison")
    return sorted(names, key=lambda name: depth[name])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(y) == 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


FLAT_TOLERANCE = 0.02
"""A first-to-last change within this share of the larger end is reported as "stays about
flat" rather than a rise or fall (coverage 1.00 -> 0.99 is not a finding)."""


def _trend_word(series: np.ndarray) -> str:
    steps = np.diff(series)
    if series[-1] == series[0]:
        return "stays flat"
    if abs(series[-1] - series[0]) <= FLAT_TOLERANCE * max(abs(series[0]), abs(series[-1])):
        return "stays about flat"
    if (steps >= 0).all():
        return "rises"
    if (steps <= 0).all():
        return "falls"
    return "rises overall" if series[-1] > series[0] else "falls overall"
