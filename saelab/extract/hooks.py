"""Model activations at hook points, from one forward pass that stops as early as it can,
and SAE features of those activations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.hook_names import stop_layer_for_hook


def run_hooks(
    model: HookedTransformer,
    hooks: Sequence[str],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> dict[str, Float[Tensor, "batch pos d"]]:
    """Activations at every hook from one forward pass that stops as early as the hooks allow.

    ``attention_mask`` (1 = real token) is needed when rows are padded; None means every
    position is real.
    """
    stops = [stop_layer_for_hook(h) for h in hooks]
    stop = None if any(s is None for s in stops) else max(s for s in stops if s is not None)
    # With stop_at_layer=L the forward returns the residual entering block L, which is
    # blocks.L.hook_resid_pre itself; that hook would never fire, so read the return value.
    from_output = [
        h for h, s in zip(hooks, stops, strict=True) if stop is not None and s == stop and h.endswith("hook_resid_pre")
    ]
    cached = [h for h in hooks if h not in from_output]
    device = model.cfg.device
    kwargs: dict[str, Any] = {"stop_at_layer": stop} if stop is not None else {"return_type": None}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(device)
    with torch.inference_mode():
        if cached:
            out, cache = model.run_with_cache(tokens.to(device), names_filter=cached, **kwargs)
            acts = {h: cache[h] for h in cached}
        else:  # no cache needed: skip run_with_cache's bookkeeping
            out, acts = model(tokens.to(device), **kwargs), {}
    acts.update({h: out for h in from_output})
    return acts


def hook_activations(
    model: HookedTransformer, hook: str, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos d_in"]:
    """Activations at ``hook``, running the model only as deep as that hook needs."""
    return run_hooks(model, [hook], tokens, attention_mask)[hook]


def encode_activations(sae: SAE, acts: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
    """SAE features of model activations, moved to the SAE's device and dtype first (an fp16
    SAE may read fp32 activations, or sit on another device than the model)."""
    param = next(sae.parameters())
    return sae.encode(acts.to(device=param.device, dtype=param.dtype))
