"""Dense helpers of the training step: mixed-dtype matmuls, ReLU's dense fast step, firing counts.

The sparse kernels (``sparse``) only pay while few latents are active; these are the dense
pieces every architecture shares, and ReLU's fallback for dense batches.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor


def matmul(a: Tensor, b: Tensor, compute: torch.dtype, out: torch.dtype) -> Tensor:
    """a @ b computed in ``compute`` and returned in ``out``.

    Explicit casts rather than torch.autocast: the same numbers on CPU and CUDA, and in the
    fast and reference kernels, with the small ops left in the master dtype.
    """
    return (a.to(compute) @ b.to(compute)).to(out)


def column_counts(feats_BF: Float[Tensor, "batch d_sae"], rows_per_chunk: int = 128) -> Int[Tensor, " d_sae"]:
    """Positive entries per column, counted over blocks of rows.

    Counting a whole [4096, 4608] batch at once casts it to a fresh 150 MB int64 tensor,
    which the allocator maps from the OS and page-faults in on every step (on CPU, costing
    more than the arithmetic); blocks of a few MB reuse the same memory.
    """
    counts = torch.zeros(feats_BF.shape[1], dtype=torch.int64, device=feats_BF.device)
    for block in feats_BF.split(rows_per_chunk):
        counts += (block > 0).sum(0)
    return counts


class _DenseReluEncode(torch.autograd.Function):
    """relu(pre) from pre-activations computed without autograd, with a dense backward.

    Its backward skips one of the reference's matmuls: autograd differentiates
    ``x - b_dec`` through a full batch x d_sae x d_in product, where b_dec needs only
    W_enc @ sum_b dL/dpre[b].
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, pre: Tensor, compute: torch.dtype
    ) -> Tensor:
        feats = pre.relu()  # a new tensor: ``pre`` may be a workspace the next step overwrites
        ctx.save_for_backward(x, b_dec, W_enc, feats)
        ctx.compute = compute
        return feats

    @staticmethod
    def backward(ctx: Any, grad_BF: Tensor) -> tuple[Tensor | None, ...]:
        x, b_dec, W_enc, feats = ctx.saved_tensors
        need_x, need_b_dec, need_W_enc, need_b_enc = ctx.needs_input_grad[:4]
        # ReLU's own backward (torch's relu differentiates this way): 0 where feats <= 0,
        # i.e. where pre <= 0, and one fused pass over the batch.
        grad_pre = torch.ops.aten.threshold_backward(grad_BF, feats, 0)
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        if need_b_enc or need_b_dec:
            grad_b_enc = grad_pre.sum(0, dtype=W_enc.dtype)
        if need_W_enc:
            grad_W_enc = matmul((x - b_dec).t(), grad_pre, ctx.compute, W_enc.dtype)
        if need_b_dec:
            assert grad_b_enc is not None
            grad_b_dec = -(W_enc @ grad_b_enc)
        if need_x:
            grad_x = matmul(grad_pre, W_enc.t(), ctx.compute, x.dtype)
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc if need_b_enc else None, None, None


def dense_relu_encode(
    x: Float[Tensor, "batch d_in"],
    b_dec: Float[Tensor, " d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    pre: Float[Tensor, "batch d_sae"],
    compute: torch.dtype,
) -> Float[Tensor, "batch d_sae"]:
    """``relu(pre)`` with the gradient of ``relu((x - b_dec) @ W_enc + b_enc)``, backward
    matmuls in ``compute``. ``pre`` must hold that product, computed without autograd."""
    return _DenseReluEncode.apply(x, b_dec, W_enc, b_enc, pre, compute)  # type: ignore[no-any-return]


def dense_relu_encode_reference(
    x: Float[Tensor, "batch d_in"],
    b_dec: Float[Tensor, " d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
) -> Float[Tensor, "batch d_sae"]:
    """What :func:`dense_relu_encode` computes, autograd end to end."""
    return ((x - b_dec) @ W_enc + b_enc).relu()
