"""What a TransformerLens hook name says about where it sits in the model."""

from __future__ import annotations

import re

_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")

D_MODEL_HOOKS = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")
"""Hook suffixes whose activations are d_model wide."""


def hook_layer(hook_name: str) -> int | None:
    """The block index L of ``blocks.L.*`` (None for hooks outside the blocks)."""
    match = _LAYER_RE.match(hook_name)
    return int(match.group(1)) if match else None


def stop_layer_for_hook(hook_name: str) -> int | None:
    """The ``stop_at_layer`` that still computes ``hook_name`` (None: run everything).

    ``blocks.L.hook_resid_pre`` is the input of block L, so blocks 0..L-1 suffice; any
    other hook inside block L needs block L itself.
    """
    layer = hook_layer(hook_name)
    if layer is None:
        return None
    return layer if hook_name.endswith("hook_resid_pre") else layer + 1


def resume_layer_for_hook(hook_name: str) -> int | None:
    """The ``start_at_layer`` whose input is the activation at ``hook_name`` (None: the hook
    is not the whole residual stream, so a run cannot resume from it)."""
    layer = hook_layer(hook_name)
    if layer is None:
        return None
    if hook_name.endswith("hook_resid_pre"):
        return layer
    if hook_name.endswith("hook_resid_post"):
        return layer + 1
    return None
