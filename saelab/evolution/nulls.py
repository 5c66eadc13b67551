"""What similarity unrelated features reach by chance, so "a good match" is a measured
threshold and never a number chosen by eye.

* Decoder null: B's directions replaced by random ones drawn from a Gaussian with the
  mean and covariance of B's own (unit) directions. Isotropic random directions would be too easy to
  beat: real decoders share the residual stream's anisotropy (a few directions of high
  variance), so unrelated features of two real SAEs align more than random vectors do.
* Activation null: B's tokens shuffled against A's (one global permutation), which keeps
  every feature's frequency and distribution and breaks only the token alignment.

Each null is drawn twice with different seeds: the first sets the threshold (a quantile of
the best-match similarity of every feature of A), the second is an independent check of the
rate at which the null passes it (about ``1 - quantile`` when all is well).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from jaxtyping import Float
from torch import Tensor

from saelab.evolution.similarity import dims


def covariance_matched_directions(directions: Float[Tensor, "n d"], seed: int) -> Float[Tensor, "n d"]:
    """As many unit directions as ``directions`` has, drawn from a Gaussian with the mean and
    covariance of ``directions`` (unit rows), so they share its anisotropy and nothing else."""
    n, d = directions.shape
    gen = torch.Generator().manual_seed(seed)
    rows = directions.double()
    mean = rows.mean(dim=0)
    centred = rows - mean
    # For n < d the covariance is rank-deficient: z @ centred / sqrt(n) has exactly that
    # covariance (random mixes of the real directions, no more), with no eigendecomposition.
    if n >= d:
        vals, vecs = torch.linalg.eigh(centred.T @ centred / n)
        root = vecs * vals.clamp(min=0).sqrt()
        draws = torch.randn(n, d, generator=gen, dtype=torch.float64) @ root.T
    else:
        draws = torch.randn(n, n, generator=gen, dtype=torch.float64) @ centred / n**0.5
    draws = (draws + mean).float()
    return draws / draws.norm(dim=1, keepdim=True).clamp(min=1e-12)


def shuffled_rows(matrix: sp.csr_matrix, seed: int) -> sp.csr_matrix:
    """The rows (tokens) of ``matrix`` in a seeded random order."""
    order = np.random.default_rng(seed).permutation(dims(matrix)[0])
    return sp.csr_matrix(matrix[order])


def best_per_row(similarity: Float[np.ndarray, "n_a n_b"]) -> Float[np.ndarray, " n_a"]:
    return similarity.max(axis=1)


def threshold_from_null(null: Float[np.ndarray, "n_a n_b"], quantile: float) -> float:
    """The ``quantile`` of the null's best-match similarity over the features of A."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"null_quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(best_per_row(null), quantile))
