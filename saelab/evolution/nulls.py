"""What similarity unrelated features reach by chance, so "a good match" is a measured
threshold and never a number chosen by eye.

* Decoder null, ``"dictionary"`` (the default): real directions that are known to be
  different features, those of one dictionary against its own *other* features, cell by cell
  the larger of that and the Gaussian null below (a dictionary of near-orthogonal features
  is no reference alone). Each feature of A meets as many of A's other features as B has, so
  the null's best match is what a feature reaches against ``n_b`` real, unrelated directions.
  Random directions are too easy to beat: on SmolLM2's suite the nearest other feature of
  one SAE has a median cosine of 0.20-0.25 and a 99th percentile of 0.39-0.40, while Gaussian
  draws with the decoder's own mean and covariance set a threshold near 0.21-0.29, so 79% of
  blocks.20's features "matched" at blocks.28 while that null passed 1%.
* Decoder null, ``"gaussian"``: B's directions replaced by random ones drawn from a Gaussian
  with the mean and covariance of B's own (unit) directions (they share the residual stream's
  anisotropy and nothing else).
* Activation null: B's tokens shuffled against A's (one global permutation), which keeps
  every feature's frequency and distribution and breaks only the token alignment.

Each null is drawn twice: the first sets the threshold (a quantile of the best-match
similarity of every feature of A), the second is an independent check of the rate at which
the null passes it (about ``1 - quantile`` when all is well). The dictionary null's check is
B against its own other features, a second real dictionary.
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


def own_dictionary_null(
    directions: Float[Tensor, "n d"], n_rows: int, n_cols: int, seed: int
) -> Float[np.ndarray, "n_rows n_cols"]:
    """Cosines between features of one dictionary that are not the same feature, ``[n_rows,
    n_cols]``: rows are every feature in order when ``n_rows`` is their number (else drawn),
    columns ``n_cols`` features drawn without replacement where there are enough; a feature
    never meets itself (-1 there)."""
    n = directions.shape[0]
    if n < 2:
        raise ValueError(f"a dictionary null needs at least 2 features to compare, got {n}; use null='gaussian'")
    rng = np.random.default_rng(seed)
    rows = np.arange(n) if n_rows == n else rng.choice(n, n_rows, replace=n_rows > n)
    cols = rng.choice(n, n_cols, replace=n_cols > n)
    unit = directions.float()
    sims = (unit[torch.as_tensor(rows)] @ unit[torch.as_tensor(cols)].T).numpy()
    sims[rows[:, None] == cols[None, :]] = -1.0
    return sims


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
