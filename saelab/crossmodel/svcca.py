"""SVCCA of paired features' decoder directions, beside random pairings.

Lan et al. 2024 ("Sparse autoencoders reveal universal feature spaces across LLMs") pair
features of two models' SAEs by activation correlation, then ask whether the paired decoder
rows span similar spaces: SVCCA treats each pair as one sample, reduces each side to the
singular directions that hold most of its variance (SV), and takes the mean canonical
correlation between the two reduced sides (CCA). The same number for random pairings of the
same features is the baseline: canonical correlations are high by chance when the kept
dimensions approach the number of pairs, so only the gap means anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float

MIN_PAIRS_PER_DIM = 2
"""The pairs must outnumber the kept dimensions of both sides together at least this many times."""


@dataclass(frozen=True)
class SVCCAResult:
    """SVCCA of one pairing, with its random-pairing baseline."""

    mean_correlation: float
    correlations: Float[np.ndarray, " k"]
    dims_a: int
    dims_b: int
    n_pairs: int
    random_mean: float
    """Mean over ``n_random`` random pairings of their mean canonical correlation."""
    random_sd: float
    n_random: int

    @property
    def above_random_sd(self) -> float:
        """How many random-pairing standard deviations the real pairing is above their mean."""
        return (self.mean_correlation - self.random_mean) / self.random_sd if self.random_sd > 0 else float("inf")

    def to_dict(self) -> dict[str, float | int]:
        return {"svcca": self.mean_correlation, "svcca_random": self.random_mean, "svcca_random_sd": self.random_sd,
                "above_random_sd": self.above_random_sd, "dims_a": self.dims_a, "dims_b": self.dims_b,
                "n_pairs": self.n_pairs, "n_random": self.n_random}  # fmt: skip


def reduce(x: Float[np.ndarray, "n d"], variance: float, max_dims: int) -> Float[np.ndarray, "n k"]:
    """``x`` centred and projected on its top singular directions holding ``variance`` of its
    variance (at most ``max_dims`` of them)."""
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    share = np.cumsum(s**2) / max(float((s**2).sum()), 1e-30)
    k = min(int(np.searchsorted(share, variance) + 1), max_dims, len(s))
    return u[:, :k] * s[:k]


def canonical_correlations(a: Float[np.ndarray, "n p"], b: Float[np.ndarray, "n q"]) -> Float[np.ndarray, " k"]:
    """Canonical correlations of two centred samples: the singular values of ``Qa^T Qb``."""
    qa, _ = np.linalg.qr(a - a.mean(axis=0))
    qb, _ = np.linalg.qr(b - b.mean(axis=0))
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def svcca(
    a: Float[np.ndarray, "n d_a"],
    b: Float[np.ndarray, "n d_b"],
    *,
    variance: float = 0.99,
    max_dims: int = 64,
    n_random: int = 20,
    seed: int = 0,
) -> SVCCAResult:
    """SVCCA of paired rows (row ``i`` of ``a`` with row ``i`` of ``b``; ``d_a`` and ``d_b``
    may differ), and of ``n_random`` random pairings of the same rows."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"a and b must be [n, d] with the same n (paired rows); got {a.shape} and {b.shape}")
    if not 0 < variance <= 1 or max_dims < 1 or n_random < 2:
        raise ValueError(
            f"need 0 < variance <= 1, max_dims >= 1, n_random >= 2; got {variance}, {max_dims}, {n_random}"
        )
    ra, rb = reduce(a, variance, max_dims), reduce(b, variance, max_dims)
    need = MIN_PAIRS_PER_DIM * (ra.shape[1] + rb.shape[1])
    if len(a) < need:
        raise ValueError(
            f"{len(a)} pairs for {ra.shape[1]} + {rb.shape[1]} kept dimensions: canonical correlations would be "
            f"near 1 by chance. Give at least {need} pairs or a smaller max_dims."
        )
    rho = canonical_correlations(ra, rb)
    rng = np.random.default_rng(seed)
    random = [float(canonical_correlations(ra, rb[rng.permutation(len(rb))]).mean()) for _ in range(n_random)]
    return SVCCAResult(float(rho.mean()), rho, ra.shape[1], rb.shape[1], len(a),
                       float(np.mean(random)), float(np.std(random, ddof=1)), n_random)  # fmt: skip


def decoder_svcca(
    pairs: pd.DataFrame,
    dec_a: Float[np.ndarray, "d_sae_a d_model_a"],
    dec_b: Float[np.ndarray, "d_sae_b d_model_b"],
    **kwargs: float | int,
) -> SVCCAResult:
    """SVCCA of the decoder rows of ``pairs`` (``feature_a, feature_b`` columns, e.g.
    :func:`saelab.crossmodel.matched_pairs`)."""
    if pairs.empty:
        raise ValueError("No matched pairs: SVCCA needs paired features")
    ia, ib = pairs["feature_a"].to_numpy(int), pairs["feature_b"].to_numpy(int)
    if ia.max() >= len(dec_a) or ib.max() >= len(dec_b) or min(ia.min(), ib.min()) < 0:
        raise ValueError(f"pairs name features outside the decoders ({len(dec_a)} and {len(dec_b)} rows)")
    return svcca(np.asarray(dec_a)[ia], np.asarray(dec_b)[ib], **kwargs)  # type: ignore[arg-type]
