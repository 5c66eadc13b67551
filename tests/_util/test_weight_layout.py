"""Weights stored as the forward reads them: same shapes, same values, bitwise the same outputs,
and no per-call copy of the weights TransformerLens would otherwise transpose."""

from __future__ import annotations

from typing import Any

import einops
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saelab._util.keys import model_identity
from saelab._util.weight_layout import transformer_lens_layout, use_forward_layouts
from tests._tiny_model import build_tiny_model


def plain_model() -> HookedTransformer:
    """GPT-2's shape in miniature: LayerNorm, a plain GELU MLP, full multi-head attention."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=97, n_ctx=32,
                                  act_fn="gelu_new", normalization_type="LN", seed=0)  # fmt: skip
    return HookedTransformer(cfg).eval()


@pytest.mark.parametrize("build", [build_tiny_model, plain_model], ids=["gated-gqa", "plain"])
def test_outputs_are_bitwise_the_same(build):
    laid_out = use_forward_layouts(build())
    standard = transformer_lens_layout(laid_out)
    tokens = torch.randint(1, 90, (3, 12))
    with torch.no_grad():
        assert torch.equal(laid_out(tokens), standard(tokens))
        _, cache_a = laid_out.run_with_cache(tokens)
        _, cache_b = standard.run_with_cache(tokens)
    assert all(torch.equal(cache_a[k], cache_b[k]) for k in cache_b.keys())
    shapes = {n: p.shape for n, p in standard.named_parameters()}
    assert {n: p.shape for n, p in laid_out.named_parameters()} == shapes
    assert model_identity(laid_out) == model_identity(standard)  # caches keyed by the model stay valid


def test_the_forward_reads_views_not_copies():
    model = build_tiny_model()  # laid out as load_model lays out every real model
    block: Any = model.blocks[0]
    mlp, attn = block.mlp, block.attn
    for weight in (mlp.W_gate, mlp.W_in, mlp.W_out, model.unembed.W_U):
        assert weight.T.contiguous().data_ptr() == weight.data_ptr()
    for weight in (attn.W_Q, attn._W_K, attn._W_V):
        merged = einops.rearrange(weight, "head d_model d_head -> (head d_head) d_model")
        assert merged.data_ptr() == weight.data_ptr()
    out = einops.rearrange(attn.W_O, "head d_head d_model -> d_model (head d_head)").contiguous()
    assert out.data_ptr() == attn.W_O.data_ptr()


def test_plain_mlp_weights_keep_their_layout():
    # The plain MLP multiplies W_in as it is (addmm); transposing it would only cost.
    block: Any = use_forward_layouts(plain_model()).blocks[0]
    assert block.mlp.W_in.is_contiguous() and block.mlp.W_out.is_contiguous()
    assert not block.attn.W_Q.is_contiguous()


def test_idempotent():
    model = build_tiny_model()
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    use_forward_layouts(model)
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == before


def test_loaded_models_are_laid_out(model):
    block: Any = model.blocks[0]
    assert model.unembed.W_U.T.is_contiguous() and block.mlp.W_gate.T.is_contiguous()
