"""Match the features of two SAEs: by decoder direction, by activation, or one-to-one.

``match_features(sae_a, sae_b, method=...)``:

* ``"decoder"``: cosine of decoder directions; data-free.
* ``"activation"``: correlation of the two SAEs' activations over the same tokens (a
  ``sample`` from :mod:`saelab.evolution.samples`); robust to directions that rotate with depth.
* ``"hungarian"``: a one-to-one assignment (scipy's ``linear_sum_assignment``) on the
  similarity named by ``on``.

Every feature of A gets its best match and a "good match" flag; the threshold is a quantile
of the same similarity under a null (:mod:`saelab.evolution.nulls`), never a chosen number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from jaxtyping import Float
from scipy.optimize import linear_sum_assignment

from saelab.analysis._checks import check_feature_ids
from saelab.evolution.nulls import (
    covariance_matched_directions,
    own_dictionary_null,
    shuffled_rows,
    threshold_from_null,
)
from saelab.evolution.similarity import (
    CorrelationAccumulator,
    as_csr,
    check_same_width,
    decoder_directions,
    decoder_width,
    dims,
)

Method = Literal["decoder", "activation", "hungarian"]
Similarity = Literal["decoder", "activation"]
METHODS: tuple[str, ...] = ("decoder", "activation", "hungarian")
DecoderNull = Literal["dictionary", "gaussian"]
DECODER_NULLS: tuple[str, ...] = ("dictionary", "gaussian")
MAX_MATRIX_BYTES = 6 * 1024**3  # three float32 [n_a, n_b] matrices and the float64 sums


class Similarities(NamedTuple):
    """One similarity, measured and under its null twice (``[n_a, n_b]`` each)."""

    kind: str
    real: Float[np.ndarray, "n_a n_b"]
    null: Float[np.ndarray, "n_a n_b"]
    """The null draw that sets the threshold."""
    null_check: Float[np.ndarray, "n_a n_b"]
    """An independent null draw, to measure how often the null passes that threshold."""
    n_tokens: int
    """Tokens in the activation sample (0 for decoder similarity)."""


@dataclass
class FeatureMatches:
    """The matches of every feature of A among the features of B."""

    method: str
    on: str
    """The similarity the matches are made on: decoder or activation."""
    threshold: float
    """A match is good when its similarity is at least this (the null's ``null_quantile``)."""
    null_quantile: float
    best: pd.DataFrame
    """One row per feature of A (index ``feature``): ``best_match``, ``similarity``, ``matched``."""
    best_b: pd.DataFrame
    """The same for every feature of B, looking back at A."""
    pairs: pd.DataFrame
    """Tidy: ``feature_a, feature_b, similarity, rank`` (the top matches of each feature of A;
    for ``hungarian`` the one assigned partner, rank 1)."""
    null_rate: float
    """Share of A's features whose best match under an independent null draw is 'good'."""
    n_tokens: int = 0

    @property
    def matched_share(self) -> float:
        """Share of A's features with a good match in B."""
        return float(np.mean(self.best["matched"].to_numpy()))

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method, "on": self.on, "n_a": len(self.best), "n_b": len(self.best_b),
            "threshold": self.threshold, "matched_share": self.matched_share, "null_rate": self.null_rate,
            "median_best_similarity": float(np.median(self.best["similarity"].to_numpy())), "n_tokens": self.n_tokens,
        }  # fmt: skip


def match_features(
    sae_a: Any,
    sae_b: Any,
    *,
    method: Method = "decoder",
    on: Similarity = "decoder",
    sample: Iterable[tuple[Any, Any]] | None = None,
    null_quantile: float = 0.99,
    top: int = 3,
    seed: int = 0,
    null: DecoderNull = "dictionary",
) -> FeatureMatches:
    """Match every feature of ``sae_a`` to the features of ``sae_b``.

    ``sae_a``/``sae_b``: SAEs (their ``W_dec`` is read) or ``[d_sae, d_in]`` decoder directions.
    ``sample``: paired activation chunks, needed when the similarity is ``activation``.
    ``on``: the similarity the ``hungarian`` assignment maximises (ignored otherwise).
    ``null``: the decoder similarity's null (:func:`decoder_similarities`); activation
    similarity's null is always B's tokens shuffled.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; valid: {list(METHODS)}")
    kind: Similarity = on if method == "hungarian" else method  # type: ignore[assignment]
    sims = similarities(sae_a, sae_b, kind, sample=sample, seed=seed, null=null)
    return matches_from(sims, one_to_one=method == "hungarian", null_quantile=null_quantile, top=top)


def similarities(
    sae_a: Any,
    sae_b: Any,
    kind: Similarity,
    *,
    sample: Iterable[tuple[Any, Any]] | None = None,
    seed: int = 0,
    null: DecoderNull = "dictionary",
) -> Similarities:
    """The measured similarity ``[n_a, n_b]`` and two null draws of it."""
    if kind == "decoder":
        if sample is not None:
            raise ValueError("A token sample is only used by activation matching; pass on='activation' or no sample")
        return decoder_similarities(sae_a, sae_b, seed, null)
    if kind == "activation":
        if sample is None:
            raise ValueError(
                "Activation matching needs a token sample: pass sample=per_token_pairs(...), "
                "text_pairs(...) or store_pairs(...) from saelab.evolution"
            )
        width_a, width_b = decoder_width(sae_a), decoder_width(sae_b)
        if width_a is not None and width_b is not None:
            check_same_width(width_a, width_b)
        return activation_similarities(sample, seed)
    raise ValueError(f"Unknown similarity {kind!r}; valid: ['decoder', 'activation']")


def decoder_similarities(sae_a: Any, sae_b: Any, seed: int = 0, null: DecoderNull = "dictionary") -> Similarities:
    """Cosines of decoder directions, and two draws of ``null`` (:mod:`saelab.evolution.nulls`):
    ``"gaussian"``, A against random directions with B's mean and covariance; ``"dictionary"``,
    the larger of that and A's features against A's other features (the check: B's against B's)."""
    if null not in DECODER_NULLS:
        raise ValueError(f"Unknown decoder null {null!r}; valid: {list(DECODER_NULLS)}")
    dirs_a, dirs_b = decoder_directions(sae_a, "sae_a"), decoder_directions(sae_b, "sae_b")
    check_same_width(dirs_a.shape[1], dirs_b.shape[1])
    (n_a, _), (n_b, _) = dirs_a.shape, dirs_b.shape
    _check_size(n_a, n_b)
    real = (dirs_a @ dirs_b.T).numpy()
    reference, check = ((dirs_a @ covariance_matched_directions(dirs_b, seed + k).T).numpy() for k in (1, 2))
    if null == "dictionary":
        # A match must beat both: a dictionary of near-orthogonal features is no reference on its own.
        np.maximum(reference, own_dictionary_null(dirs_a, n_a, n_b, seed + 1), out=reference)
        np.maximum(check, own_dictionary_null(dirs_b, n_a, n_b, seed + 2), out=check)
    return Similarities("decoder", real, reference, check, 0)


def activation_similarities(sample: Iterable[tuple[Any, Any]], seed: int = 0) -> Similarities:
    """Correlations over the sample's tokens, and over the same tokens with B shuffled."""
    chunks = [(as_csr(a, "chunk_a"), as_csr(b, "chunk_b")) for a, b in sample]
    if not chunks or sum(dims(a)[0] for a, _ in chunks) == 0:
        raise ValueError("The token sample is empty; activation matching needs tokens from both SAEs")
    acts_a = sp.csr_matrix(sp.vstack([a for a, _ in chunks], format="csr"))
    acts_b = sp.csr_matrix(sp.vstack([b for _, b in chunks], format="csr"))
    (n_tokens, d_a), (rows_b, d_b) = dims(acts_a), dims(acts_b)
    if n_tokens != rows_b:
        raise ValueError(f"The two sides of the sample hold different numbers of tokens ({n_tokens} vs {rows_b})")
    _check_size(d_a, d_b)
    matrices = []
    for side_b in (acts_b, shuffled_rows(acts_b, seed + 1), shuffled_rows(acts_b, seed + 2)):
        acc = CorrelationAccumulator(d_a, d_b)
        acc.update(acts_a, side_b)
        matrices.append(acc.correlation())
    return Similarities("activation", *matrices, n_tokens=n_tokens)


def matches_from(sims: Similarities, *, one_to_one: bool = False, null_quantile: float = 0.99,
                 top: int = 3) -> FeatureMatches:  # fmt: skip
    """Best matches, flags and the tidy pair table from measured similarities."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    threshold = threshold_from_null(sims.null, null_quantile)
    real = sims.real
    if one_to_one:
        rows, cols = linear_sum_assignment(real, maximize=True)
        best_a = _assigned(real.shape[0], rows, cols, real[rows, cols], threshold)
        best_b = _assigned(real.shape[1], cols, rows, real[rows, cols], threshold)
        pairs = pd.DataFrame({"feature_a": rows, "feature_b": cols, "similarity": real[rows, cols], "rank": 1})
    else:
        best_a = best_matches(real, threshold)
        best_b = best_matches(real.T, threshold)
        pairs = top_pairs(real, top)
    null_rate = float((sims.null_check.max(axis=1) >= threshold).mean())
    return FeatureMatches(
        method="hungarian" if one_to_one else sims.kind, on=sims.kind, threshold=threshold,
        null_quantile=null_quantile, best=best_a, best_b=best_b, pairs=pairs, null_rate=null_rate,
        n_tokens=sims.n_tokens,
    )  # fmt: skip


def top_pairs(similarity: Float[np.ndarray, "n_a n_b"], top: int) -> pd.DataFrame:
    """The ``top`` most similar features of B for every feature of A, best first."""
    top = min(top, similarity.shape[1])
    part = np.argpartition(-similarity, top - 1, axis=1)[:, :top]
    values = np.take_along_axis(similarity, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    cols, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    n_a = similarity.shape[0]
    return pd.DataFrame({
        "feature_a": np.repeat(np.arange(n_a), top), "feature_b": cols.ravel(),
        "similarity": values.ravel(), "rank": np.tile(np.arange(1, top + 1), n_a),
    })  # fmt: skip


def best_of(matches: FeatureMatches, features: Iterable[int]) -> pd.DataFrame:
    """The best-match rows of some features of A, with a clear error for ids out of range."""
    ids = check_feature_ids(features, len(matches.best))
    return matches.best.loc[ids]


def best_matches(similarity: Float[np.ndarray, "n m"], threshold: float) -> pd.DataFrame:
    """Each row's best column (index ``feature``): ``best_match, similarity, matched``; pass
    ``similarity.T`` for the columns' best rows."""
    idx = similarity.argmax(axis=1)
    value = similarity[np.arange(len(idx)), idx]
    frame = pd.DataFrame({"best_match": idx, "similarity": value, "matched": good(value, threshold)})
    return frame.rename_axis("feature")


def good(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Which similarities reach ``threshold``; NaN (a feature left unassigned) never does."""
    return np.nan_to_num(similarity, nan=-np.inf) >= threshold


def _assigned(n: int, own: np.ndarray, other: np.ndarray, value: np.ndarray, threshold: float) -> pd.DataFrame:
    best = np.full(n, -1)
    sim = np.full(n, np.nan, dtype=np.float32)
    best[own], sim[own] = other, value
    frame = pd.DataFrame({"best_match": best, "similarity": sim, "matched": good(sim, threshold)})
    return frame.rename_axis("feature")


def matching_memory(n_a: int, n_b: int) -> int:
    """Bytes that matching ``n_a`` x ``n_b`` features holds at its peak: three float32
    ``[n_a, n_b]`` similarities (measured and two nulls) and the float64 sums behind them."""
    return n_a * n_b * (3 * 4 + 8)


def _check_size(n_a: int, n_b: int) -> None:
    needed = matching_memory(n_a, n_b)
    if needed > MAX_MATRIX_BYTES:
        raise ValueError(
            f"Matching {n_a:,} x {n_b:,} features needs about {needed / 1024**3:.1f} GiB (the limit is "
            f"{MAX_MATRIX_BYTES / 1024**3:.0f} GiB); match a subset (pass decoder rows or activation "
            "columns of the features you care about)."
        )
