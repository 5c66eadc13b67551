"""Weight layouts that spare TransformerLens a copy of its weights on every forward.

TransformerLens 3.x keeps weights in the shapes of its equations (``W_in`` [d_model, d_mlp],
``W_Q`` [n_heads, d_model, d_head], ``W_U`` [d_model, d_vocab]) but hands ``F.linear`` the
other orientation: ``W_gate.T.contiguous()`` in the gated MLP, ``W_U.T.contiguous()`` in the
unembedding, an einops rearrange of ``W_Q``/``W_K``/``W_V``/``W_O`` in attention. Each is a
fresh copy of the weight on every forward: for SmolLM2 some 430 MB of copying per call, the
unembedding alone 113 MB. A full-sequence batch hardly notices, but generating one token at a
time is mostly copying (``bench/forward_layout.py`` measures it).

:func:`use_forward_layouts` keeps every parameter's shape and values and stores it in the
memory layout the forward asks for, so those ``.contiguous()`` and rearranges become views.
``F.linear`` then receives the same contiguous tensor as before, so outputs are bitwise the
same. Anything that reads the weights by shape (einsum, matmul, indexing, ``state_dict``)
works as before; only ``Tensor.view`` on such a weight would fail, and nothing here uses it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformer_lens import HookedTransformer

_ATTN_IN = ("W_Q", "W_K", "W_V", "_W_K", "_W_V")
"""[n_heads, d_model, d_head]; attention reads them as [(n_heads d_head), d_model]."""

_ORDERS: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(_ATTN_IN, (0, 2, 1)),
    "W_O": (2, 0, 1),  # [n_heads, d_head, d_model], read as [d_model, (n_heads d_head)]
    "W_U": (1, 0),  # [d_model, d_vocab], read as its transpose
}
_GATED_MLP = ("W_in", "W_gate", "W_out")
"""Transposed by the gated MLP only; the plain MLP multiplies them as they are."""


def use_forward_layouts(model: HookedTransformer) -> HookedTransformer:
    """Re-store ``model``'s weights in place in the layouts its forward reads (see the module
    docstring); returns ``model``. Idempotent, and a no-op for weights already laid out so."""
    with torch.no_grad():
        for module in model.modules():
            gated = type(module).__name__ == "GatedMLP"
            for name, param in list(module.named_parameters(recurse=False)):
                order = _ORDERS.get(name) or ((1, 0) if gated and name in _GATED_MLP else None)
                if order is not None and param.dim() == len(order):
                    setattr(module, name, _stored_as(param, order))
    return model


def transformer_lens_layout(model: HookedTransformer) -> HookedTransformer:
    """A copy of ``model`` whose every parameter is contiguous in its own shape:
    TransformerLens's own layout, the baseline that ``bench/forward_layout.py`` and the tests
    compare :func:`use_forward_layouts` against."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for module in out.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                setattr(module, name, nn.Parameter(param.detach().contiguous(), requires_grad=param.requires_grad))
    return out


def _stored_as(param: nn.Parameter, order: tuple[int, ...]) -> nn.Parameter:
    """``param`` with the same shape and values, whose ``permute(order)`` is contiguous."""
    if param.permute(order).is_contiguous():
        return param
    physical = param.detach().permute(order).contiguous()
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return nn.Parameter(physical.permute(inverse), requires_grad=param.requires_grad)
