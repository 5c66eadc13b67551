"""Straight-through estimators for JumpReLU, with a rectangle kernel (Rajamanoharan et al. 2024).

The gate ``pre > threshold`` has a zero gradient almost everywhere and a Dirac delta at the
threshold; these estimators replace the delta by a rectangle ``bandwidth`` wide, so a
threshold learns from the pre-activations that land within ``bandwidth / 2`` of it.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


def rectangle(u: Tensor) -> Tensor:
    """The kernel K(u) = 1 on (-1/2, 1/2), else 0."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLUFn(torch.autograd.Function):
    """pre * H(pre - threshold). The pre-activations get the exact gradient where the unit is
    open; the threshold, whose true gradient is a Dirac delta, gets the kernel estimate
    -(threshold / bandwidth) * K((pre - threshold) / bandwidth)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        window = rectangle((pre - threshold) / bw)
        grad_threshold = -(threshold / bw) * (window * grad).sum(0)
        return grad_pre, grad_threshold, None


class _StepFn(torch.autograd.Function):
    """H(pre - threshold), the L0 count. As in the paper, only the threshold learns from it:
    gradient -(1 / bandwidth) * K((pre - threshold) / bandwidth), none to the encoder."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_threshold = -(1.0 / bw) * (rectangle((pre - threshold) / bw) * grad).sum(0)
        return None, grad_threshold, None


def jumprelu(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, " d_sae"], bandwidth: float
) -> Float[Tensor, "batch d_sae"]:
    """``pre * (pre > threshold)``, with the straight-through threshold gradient."""
    return _JumpReLUFn.apply(pre, threshold, bandwidth)  # type: ignore[no-any-return]


def step(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, " d_sae"], bandwidth: float
) -> Float[Tensor, "batch d_sae"]:
    """``(pre > threshold)`` as 0/1, with the straight-through threshold gradient only."""
    return _StepFn.apply(pre, threshold, bandwidth)  # type: ignore[no-any-return]
