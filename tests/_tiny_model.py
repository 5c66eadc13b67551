"""A tiny, randomly initialised model for the tests that check logic rather than SmolLM2.

It has SmolLM2's architecture (Llama: rotary, grouped-query attention, RMSNorm before each
block, a gated SiLU MLP), its 30 layers and its tokenizer, so every hook name, BOS and pad
convention and tokenization a test relies on is the real one; only the width is tiny
(d_model 64). Six extractions cost 0.25 s of CPU on it against 3.3 s on SmolLM2 (one
thread), and it needs no GGUF conversion.

The weights come from a local generator (no global seeding), so every process that builds it,
a torchrun rank included, gets the same model and the same :func:`model_identity`.
"""

from __future__ import annotations

import copy
import functools
import os

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saelab._util.weight_layout import use_forward_layouts
from saelab.models import EMBEDDED_MODEL, EMBEDDED_MODELS, gguf_path

TINY_MODEL_NAME = "tiny-smollm2-shape"
D_MODEL = 64

# What writes into the residual stream is scaled so that its norms resemble SmolLM2's middle
# layers (~200 per token; here 200 at block 0, growing to ~400 by block 28), which the random
# test SAEs' defaults are tuned to (tests/conftest.py: random_sae). Every block reads through
# RMSNorm, so this scale changes only the size of the residual stream, not what the model computes.
RESIDUAL_NORM = 200.0


@functools.cache
def load_smollm2_tokenizer():
    """SmolLM2's tokenizer, read straight from the GGUF (~4 s; no model, no conversion)."""
    from transformers import AutoTokenizer

    gguf = gguf_path(EMBEDDED_MODELS[EMBEDDED_MODEL])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never ask the hub
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny_config() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        model_name=TINY_MODEL_NAME,
        tokenizer_name=TINY_MODEL_NAME,
        n_layers=30,
        d_model=D_MODEL,
        d_head=16,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=128,
        d_vocab=49152,
        n_ctx=512,  # not 2048: TransformerLens builds an n_ctx x n_ctx mask per layer, and no test needs more
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMSPre",
        final_rms=True,
        positional_embedding_type="rotary",
        rotary_dim=16,
        rotary_base=100000,
        default_prepend_bos=True,
        original_architecture="LlamaForCausalLM",
        init_weights=False,  # filled below from a local generator
        device="cpu",
    )


def build_tiny_model(seed: int = 0) -> HookedTransformer:
    """The tiny model, in eval mode, on CPU; the same weights for the same seed in any process."""
    cfg = tiny_config()
    # A copy each: TransformerLens's to_tokens changes settings of the tokenizer it uses, and
    # models built here must not share that state.
    model = HookedTransformer(cfg, tokenizer=copy.deepcopy(load_smollm2_tokenizer()), move_to_device=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(_initial_value(name, param.shape, gen, cfg))
    return use_forward_layouts(model.eval())  # as load_model gives every real model


def _initial_value(name: str, shape: torch.Size, gen: torch.Generator, cfg: HookedTransformerConfig) -> torch.Tensor:
    leaf = name.rsplit(".", 1)[-1].lstrip("_")  # grouped-query attention stores _W_K, _b_K, ...
    if leaf == "w":  # RMSNorm gains
        return torch.ones(shape)
    if leaf.startswith("b"):  # biases: none, like SmolLM2 (so a zeroed residual gives uniform logits)
        return torch.zeros(shape)
    # Reading matrices see RMS-normalised inputs (entries ~1): 1/sqrt(fan_in) keeps their
    # outputs ~1. Writing matrices put each block's share of RESIDUAL_NORM into the stream.
    fan_in = {"W_E": 1, "W_O": cfg.n_heads * cfg.d_head, "W_out": cfg.d_mlp}.get(leaf)
    if fan_in is not None:
        share = RESIDUAL_NORM / cfg.d_model**0.5 if leaf == "W_E" else 0.3 * RESIDUAL_NORM / cfg.d_model**0.5
        return torch.randn(shape, generator=gen) * share / fan_in**0.5
    return torch.randn(shape, generator=gen) / shape[-2] ** 0.5
