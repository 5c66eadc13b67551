"""The (token, latent) pairs a sparse kernel computes with, grouped by token (CSR order).

TopK gives every token the same number of pairs (k); ReLU's and BatchTopK's number varies
per token and may be 0. A sparse kernel touches only these pairs, so its cost grows with
their number rather than with batch x d_sae.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def csr_tensor(
    crow: Int[Tensor, " batch_plus_1"], cols: Int[Tensor, " nnz"], values: Tensor, shape: tuple[int, int]
) -> Tensor:
    """A sparse CSR tensor, without the invariant check or torch's beta warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


class ActivePairs(NamedTuple):
    """Pairs grouped by token: token ``b`` owns positions ``crow[b]:crow[b + 1]`` of ``rows``
    and ``cols``."""

    rows: Int[Tensor, " nnz"]
    """Token of each pair, ascending."""
    cols: Int[Tensor, " nnz"]
    """Latent of each pair. The sampled matmul (``ops.gathered_dots``) needs them ascending
    per token; the other kernels take any order."""
    crow: Int[Tensor, " batch_plus_1"]
    """Offset of each token's first pair, then nnz (CSR row pointers)."""
    n_latents: int
    """d_sae, the number of columns the pairs index into."""
    width: int | None = None
    """Pairs per token when every token has the same number (``per_token``), else None."""

    @classmethod
    def per_token(cls, idx_BK: Int[Tensor, "batch k"], n_latents: int) -> ActivePairs:
        """k pairs for every token: latents ``idx[b]`` for token ``b``."""
        B, K = idx_BK.shape
        rows = torch.arange(B, device=idx_BK.device).repeat_interleave(K)
        crow = torch.arange(0, B * K + 1, K, device=idx_BK.device)
        return cls(rows, idx_BK.reshape(-1), crow, n_latents, K)

    @classmethod
    def from_mask(cls, active_BF: Bool[Tensor, "batch d_sae"]) -> ActivePairs:
        """Every True entry; nonzero() lists them row-major, so latents ascend per token."""
        rows, cols = active_BF.nonzero(as_tuple=True)
        return cls(rows, cols, _row_pointers(rows, active_BF.shape[0]), active_BF.shape[1])

    @classmethod
    def from_flat(cls, flat_idx: Int[Tensor, " nnz"], n_tokens: int, n_latents: int) -> ActivePairs:
        """Distinct positions in a flattened [n_tokens, n_latents] tensor, in any order."""
        flat_idx = flat_idx.sort().values  # row-major order: tokens ascend, latents within them
        rows = flat_idx.div(n_latents, rounding_mode="floor")
        return cls(rows, flat_idx - rows * n_latents, _row_pointers(rows, n_tokens), n_latents)

    @property
    def n_tokens(self) -> int:
        return self.crow.shape[0] - 1

    @property
    def counts(self) -> Int[Tensor, " batch"]:
        """Pairs per token."""
        return self.crow[1:] - self.crow[:-1]

    def csr(self, values: Float[Tensor, " nnz"]) -> Float[Tensor, "batch d_sae"]:
        """The values as a sparse [batch, n_latents] CSR tensor."""
        return csr_tensor(self.crow, self.cols, values, (self.n_tokens, self.n_latents))

    def join(self, other: ActivePairs) -> JoinedPairs:
        """Both sets in one CSR order, each token's pairs from ``self`` before its pairs from
        ``other`` (a pair in both appears twice). Elementwise work only, no sort."""
        if self.width is not None and other.width is not None:
            return self._join_per_token(other)
        crow = self.crow + other.crow
        counts_self = self.counts
        at_self = _offsets_in_row(self) + crow[self.rows]
        at_other = _offsets_in_row(other) + crow[other.rows] + counts_self[other.rows]
        rows = self.rows.new_empty(int(crow[-1]))
        cols = torch.empty_like(rows)
        rows[at_self], rows[at_other] = self.rows, other.rows
        cols[at_self], cols[at_other] = self.cols, other.cols
        return JoinedPairs(ActivePairs(rows, cols, crow, self.n_latents), at_self, at_other)


    def _join_per_token(self, other: ActivePairs) -> JoinedPairs:
        """join() when both give every token a fixed number of pairs: a concatenation."""
        assert self.width is not None and other.width is not None
        B, k1, k2 = self.n_tokens, self.width, other.width
        cols = torch.cat([self.cols.view(B, k1), other.cols.view(B, k2)], dim=1)
        at = torch.arange(B * (k1 + k2), device=cols.device).view(B, k1 + k2)
        pairs = ActivePairs.per_token(cols, self.n_latents)
        return JoinedPairs(pairs, at[:, :k1].reshape(-1), at[:, k1:].reshape(-1))


class JoinedPairs(NamedTuple):
    """Two sets of pairs in one CSR order, and where each set's pairs went."""

    pairs: ActivePairs
    at_first: Int[Tensor, " nnz_first"]
    """Position in ``pairs`` of each pair of the first set."""
    at_second: Int[Tensor, " nnz_second"]
    """Position in ``pairs`` of each pair of the second set."""


def _row_pointers(rows: Int[Tensor, " nnz"], n_tokens: int) -> Int[Tensor, " batch_plus_1"]:
    crow = rows.new_zeros(n_tokens + 1)
    torch.cumsum(torch.bincount(rows, minlength=n_tokens), 0, out=crow[1:])
    return crow


def _offsets_in_row(pairs: ActivePairs) -> Int[Tensor, " nnz"]:
    """Each pair's position among its token's pairs (0, 1, ...)."""
    return torch.arange(pairs.rows.shape[0], device=pairs.rows.device) - pairs.crow[pairs.rows]
