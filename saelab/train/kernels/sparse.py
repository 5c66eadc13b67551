"""Sparse autograd kernels: the encoder's pre-activations and the decoder, at selected pairs only.

Each fast kernel sits beside its plain reference (``*_reference``): the dense computation
it must equal, outputs and gradients, which the tests check with ``assert_close``.

* :func:`selected_pre_acts`: ``((x - b_dec) @ W_enc + b_enc)[pairs]`` from pre-activations
  computed without autograd; its backward costs nnz x d_in instead of a dense
  batch x d_in x d_sae matmul.
* :func:`decode_pairs`: ``scatter(values at pairs) @ W_dec`` touching only the pairs' rows
  of ``W_dec``, forward and backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from saelab.train.kernels.pairs import ActivePairs


def _scatter_rows(
    pairs: ActivePairs, weight_N: Float[Tensor, " nnz"], rows_BD: Float[Tensor, "batch d"]
) -> Float[Tensor, "n_latents d"]:
    """out[f] = sum over pairs (b, f) of weight * rows[b]; repeated pairs add up.

    A sparse [n_latents, batch] matrix times rows: torch's COO spmm beats both index_add
    (which materialises nnz*d products) and embedding_bag's backward on CPU.
    """
    coo = torch.sparse_coo_tensor(
        torch.stack([pairs.cols, pairs.rows]), weight_N, (pairs.n_latents, pairs.n_tokens), check_invariants=False
    )
    return torch.sparse.mm(coo, rows_BD)


def _gathered_dots(
    pairs: ActivePairs, a_BD: Float[Tensor, "batch d"], W_FD: Float[Tensor, "n_latents d"]
) -> Float[Tensor, " nnz"]:
    """out[p] = a[rows[p]] . W[cols[p]] (a sampled dense-dense matmul).

    The latents must ascend per token (a valid CSR pattern, unchecked). sampled_addmm
    avoids gathering an nnz x d tensor, which costs more than the arithmetic.
    """
    try:
        pattern = pairs.csr(a_BD.new_zeros(pairs.cols.shape[0]))
        return torch.sparse.sampled_addmm(pattern, a_BD, W_FD.t(), beta=0.0).values()
    except (RuntimeError, NotImplementedError):  # dtypes or devices without a sparse kernel
        return (W_FD[pairs.cols] * a_BD[pairs.rows]).sum(-1)


def _sum_rows(
    pairs: ActivePairs, weight_N: Float[Tensor, " nnz"], W_FD: Float[Tensor, "n_latents d"]
) -> Float[Tensor, "batch d"]:
    """out[b] = sum over pairs (b, f) of weight * W[f]; a token without pairs gets 0."""
    return F.embedding_bag(
        pairs.cols, W_FD, pairs.crow, mode="sum", per_sample_weights=weight_N, include_last_offset=True
    )


class _SelectedPreActs(torch.autograd.Function):
    """``pre`` (computed without autograd) supplies the values; the backward pass uses only the
    selected pairs. Since sum_b dL/dpre[b] equals b_enc's gradient, b_dec's gradient through
    the input is one matrix-vector product."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, pre: Tensor, pairs: ActivePairs
    ) -> Tensor:
        ctx.save_for_backward(x, b_dec, W_enc)
        ctx.pairs = pairs  # index tensors outside the graph: safe to keep on ctx
        return pre[pairs.rows, pairs.cols].to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_N: Tensor) -> tuple[Tensor | None, ...]:
        x, b_dec, W_enc = ctx.saved_tensors
        pairs: ActivePairs = ctx.pairs
        need_x, need_b_dec, need_W_enc, need_b_enc = ctx.needs_input_grad[:4]
        grad_N = grad_N.contiguous()
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        if need_b_enc or need_b_dec:
            grad_b_enc = grad_N.new_zeros(pairs.n_latents).index_add_(0, pairs.cols, grad_N)
        if need_W_enc:
            grad_W_enc = _scatter_rows(pairs, grad_N, x - b_dec).t().contiguous()
        if need_b_dec:
            assert grad_b_enc is not None
            grad_b_dec = -(W_enc @ grad_b_enc)
        if need_x:
            grad_x = _sum_rows(pairs, grad_N, W_enc.t().contiguous())
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc if need_b_enc else None, None, None


def selected_pre_acts(
    x: Float[Tensor, "batch d_in"],
    b_dec: Float[Tensor, " d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    pre: Float[Tensor, "batch d_sae"],
    pairs: ActivePairs,
) -> Float[Tensor, " nnz"]:
    """``pre[rows, cols]`` with the gradient of ``((x - b_dec) @ W_enc + b_enc)[rows, cols]``.

    ``pre`` must hold that product (in any dtype); only its selected entries are read, in the
    forward pass only, so it may be a workspace the next step overwrites.
    """
    return _SelectedPreActs.apply(x, b_dec, W_enc, b_enc, pre, pairs)  # type: ignore[no-any-return]


def selected_pre_acts_reference(
    x: Float[Tensor, "batch d_in"],
    b_dec: Float[Tensor, " d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    pairs: ActivePairs,
) -> Float[Tensor, " nnz"]:
    """What :func:`selected_pre_acts` computes, densely, autograd end to end."""
    return ((x - b_dec) @ W_enc + b_enc)[pairs.rows, pairs.cols]


class _SparseDecode(torch.autograd.Function):
    """out[b] = sum over pairs (b, f) of values * W_dec[f], without dense [batch, d_sae] activations."""

    @staticmethod
    def forward(ctx: Any, values: Tensor, W_dec: Tensor, pairs: ActivePairs) -> Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.pairs = pairs
        return _sum_rows(pairs, values, W_dec)

    @staticmethod
    def backward(ctx: Any, grad_BD: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        values, W_dec = ctx.saved_tensors
        pairs: ActivePairs = ctx.pairs
        grad_BD = grad_BD.contiguous()
        grad_values = _gathered_dots(pairs, grad_BD, W_dec) if ctx.needs_input_grad[0] else None
        grad_W_dec = _scatter_rows(pairs, values, grad_BD) if ctx.needs_input_grad[1] else None
        return grad_values, grad_W_dec, None


def decode_pairs(
    values: Float[Tensor, " nnz"], W_dec: Float[Tensor, "d_sae d_in"], pairs: ActivePairs
) -> Float[Tensor, "batch d_in"]:
    """``scatter(values at pairs) @ W_dec`` (no bias), touching only the pairs' decoder rows.
    The values' gradient needs the latents ascending per token."""
    return _SparseDecode.apply(values, W_dec, pairs)  # type: ignore[no-any-return]


def decode_pairs_reference(
    values: Float[Tensor, " nnz"], W_dec: Float[Tensor, "d_sae d_in"], pairs: ActivePairs
) -> Float[Tensor, "batch d_in"]:
    """What :func:`decode_pairs` computes, densely (repeated pairs add up)."""
    dense = values.new_zeros(pairs.n_tokens, pairs.n_latents)
    return dense.index_put((pairs.rows, pairs.cols), values, accumulate=True) @ W_dec


def sparse_decode(
    values: Float[Tensor, "batch k"], idx: Int[Tensor, "batch k"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, "batch d_in"]:
    """``scatter(values at idx) @ W_dec`` touching only the k rows per token (no bias).

    ``idx`` must hold distinct latents, sorted, in each row.
    """
    return decode_pairs(values.reshape(-1), W_dec, ActivePairs.per_token(idx, W_dec.shape[0]))
