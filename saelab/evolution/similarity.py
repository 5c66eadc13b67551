"""How alike two dictionaries' features are: by their decoder directions, or by how their
activations move together over the same tokens.

* :func:`decoder_directions` reads ``[d_sae, d_in]`` unit directions from an SAE or a tensor.
* :func:`decoder_similarity` is the cosine of every pair, ``[n_a, n_b]`` (data-free).
* :class:`CorrelationAccumulator` streams pairs of activation chunks and returns the Pearson
  correlation of every pair of features, ``[n_a, n_b]``. SAE activations are sparse, so it
  multiplies sparse chunks (a token with 32 active features on each side costs 32 x 32
  products, not 4,608 x 4,608) and keeps only the sums it needs: that is what lets it stay
  far below the cost of the model forward that produced the activations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from jaxtyping import Float
from torch import Tensor

Chunk = Any
"""One chunk of activations ``[n_tokens, d_sae]``: a scipy sparse matrix, a numpy array or a tensor."""

_FLUSH_ROWS = 8192  # chunks are stacked up to this many tokens before one sparse product


def decoder_directions(sae_or_directions: Any, name: str = "sae") -> Float[Tensor, "d_sae d_in"]:
    """Unit-norm decoder directions ``[d_sae, d_in]`` (float32, CPU) of an SAE (``W_dec``), a
    trainable SAE, or a ``[d_sae, d_in]`` tensor or array of directions."""
    weights = getattr(sae_or_directions, "W_dec", sae_or_directions)
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(weights)
    if not isinstance(weights, Tensor):
        raise TypeError(f"{name} must be an SAE or a [d_sae, d_in] tensor of decoder directions, "
                        f"got {type(sae_or_directions).__name__}")
    weights = weights.detach().float().cpu()
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"{name}'s decoder must be a non-empty [d_sae, d_in] matrix, got shape {tuple(weights.shape)}")
    if not torch.isfinite(weights).all():
        raise ValueError(f"{name}'s decoder contains NaN or inf")
    norms = weights.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        zero = torch.nonzero(norms[:, 0] == 0)[:5, 0].tolist()
        raise ValueError(f"{name} has decoder directions of norm 0 (features {zero}); they have no direction to match")
    return weights / norms


def decoder_width(sae_or_directions: Any) -> int | None:
    """``d_in`` of an SAE or a ``[d_sae, d_in]`` matrix of directions, read without copying;
    None when it has no 2-D decoder to read it from."""
    weights = getattr(sae_or_directions, "W_dec", sae_or_directions)
    shape = getattr(weights, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) == 2 else None


def check_same_width(d_a: int, d_b: int, what: str = "d_in") -> None:
    if d_a != d_b:
        raise ValueError(
            f"The two SAEs have different {what} ({d_a} vs {d_b}): their directions live in different "
            "spaces and cannot be compared. Match SAEs of the same model width (the same residual stream)."
        )


def decoder_similarity(a: Any, b: Any) -> Float[np.ndarray, "n_a n_b"]:
    """Cosine similarity of every decoder direction of ``a`` with every one of ``b``.

    SAEs that read different layers are compared in the residual basis as it is: the
    residual stream is one space that every block adds to, so a direction that persists
    keeps its coordinates (up to what later blocks write into it).
    """
    dirs_a, dirs_b = decoder_directions(a, "sae_a"), decoder_directions(b, "sae_b")
    check_same_width(dirs_a.shape[1], dirs_b.shape[1])
    return (dirs_a @ dirs_b.T).numpy()


def dims(matrix: Any) -> tuple[int, int]:
    """``(rows, cols)`` of a 2-D sparse or dense matrix (scipy types its shape as optional)."""
    rows, cols = matrix.shape
    return int(rows), int(cols)


def as_csr(chunk: Chunk, name: str) -> sp.csr_matrix:
    """A chunk ``[n_tokens, d_sae]`` as a float32 CSR matrix."""
    if isinstance(chunk, Tensor):
        chunk = chunk.detach().float().cpu().numpy()
    matrix = sp.csr_matrix(chunk, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_tokens, d_sae], got {matrix.ndim}-D")
    if matrix.nnz and not np.isfinite(matrix.data).all():
        raise ValueError(f"{name} contains NaN or inf")
    return matrix


class CorrelationAccumulator:
    """Pearson correlation of every feature of A with every feature of B over a token stream.

    Call :meth:`update` with paired chunks (row ``t`` of both is the same token), then
    :meth:`correlation`. Memory is ``n_a x n_b`` float64 for the cross sums, whatever the
    number of tokens.
    """

    def __init__(self, d_a: int, d_b: int) -> None:
        self.d_a, self.d_b = d_a, d_b
        self.n_tokens = 0
        self._sum_a, self._sq_a = np.zeros(d_a), np.zeros(d_a)
        self._sum_b, self._sq_b = np.zeros(d_b), np.zeros(d_b)
        self._cross = np.zeros((d_a, d_b))
        self._pending: list[tuple[sp.csr_matrix, sp.csr_matrix]] = []
        self._pending_rows = 0

    def update(self, chunk_a: Chunk, chunk_b: Chunk) -> None:
        a, b = as_csr(chunk_a, "chunk_a"), as_csr(chunk_b, "chunk_b")
        (rows_a, width_a), (rows_b, width_b) = dims(a), dims(b)
        if width_a != self.d_a or width_b != self.d_b:
            raise ValueError(f"Expected chunks of width {self.d_a} and {self.d_b}, got {width_a} and {width_b}")
        if rows_a != rows_b:
            raise ValueError(f"Paired chunks must hold the same tokens; got {rows_a} and {rows_b} rows")
        self._pending.append((a, b))
        self._pending_rows += rows_a
        if self._pending_rows >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        a = sp.csr_matrix(sp.vstack([p[0] for p in self._pending], format="csr"))
        b = sp.csr_matrix(sp.vstack([p[1] for p in self._pending], format="csr"))
        self._pending, self._pending_rows = [], 0
        self.n_tokens += dims(a)[0]
        self._sum_a += np.asarray(a.sum(axis=0), dtype=np.float64)[0]
        self._sq_a += np.asarray(a.multiply(a).sum(axis=0), dtype=np.float64)[0]
        self._sum_b += np.asarray(b.sum(axis=0), dtype=np.float64)[0]
        self._sq_b += np.asarray(b.multiply(b).sum(axis=0), dtype=np.float64)[0]
        cross = (a.T.tocsr().astype(np.float64) @ b.astype(np.float64)).tocoo()
        self._cross[cross.row, cross.col] += cross.data

    def correlation(self) -> Float[np.ndarray, "d_a d_b"]:
        """``[d_a, d_b]`` correlations; 0 for a feature that is constant over the sample (for
        an SAE feature: never active), which has no correlation to speak of."""
        self._flush()
        if self.n_tokens < 2:
            raise ValueError(
                f"The token sample is empty or too small ({self.n_tokens} tokens); activation matching "
                "needs at least 2 tokens, and thousands for stable correlations."
            )
        n = self.n_tokens
        mean_a, mean_b = self._sum_a / n, self._sum_b / n
        std_a = np.sqrt(np.maximum(self._sq_a / n - mean_a**2, 0.0))
        std_b = np.sqrt(np.maximum(self._sq_b / n - mean_b**2, 0.0))
        # In place over the [d_a, d_b] matrix: float64 temporaries of that size cost more
        # than the sparse products that filled it.
        cov = self._cross / n
        cov -= np.outer(mean_a, mean_b)
        cov *= _inverse(std_a)[:, None]
        cov *= _inverse(std_b)[None, :]
        corr = cov.astype(np.float32)
        return np.clip(corr, -1.0, 1.0, out=corr)

    @property
    def active_a(self) -> np.ndarray:
        """Which features of A varied over the sample (``True`` = it can be matched)."""
        self._flush()
        return self._sq_a > 0

    @property
    def active_b(self) -> np.ndarray:
        self._flush()
        return self._sq_b > 0


def _inverse(std: np.ndarray) -> np.ndarray:
    """1 / std, and 0 for a feature that does not vary (so its correlations are 0)."""
    return np.divide(1.0, std, out=np.zeros_like(std), where=std > 1e-6)
