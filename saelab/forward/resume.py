"""One way to run the model from a hook on, given the activation there (possibly edited).

At a residual-stream hook (``hook_resid_pre``, ``hook_resid_post``) the activation is the whole
state of the forward pass, so the run resumes from it with ``start_at_layer``: past a late hook
that skips most of the model (at layer 20 of 30, two thirds of the layers). Any other hook
(attention or MLP outputs, per-head hooks) is not the whole state; there the model runs from the
tokens with the activation put in place at the hook.

The head (ln_final, the unembedding, a soft cap) is applied here rather than by the model, so a
caller can unembed only the positions it reads (``from_position``): an edit at position p cannot
move the logits before p, and SmolLM2's 49,152-token unembedding is a large share of the work
past a late hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.hook_names import resume_layer_for_hook

HookFn = Callable[[Tensor, Any], Tensor | None]
"""A TransformerLens forward hook: ``fn(activation, hook) -> replacement or None``."""


def resume(
    model: HookedTransformer,
    hook: str,
    acts: Float[Tensor, "batch pos *d"] | None,
    tokens: Int[Tensor, "batch pos"] | None = None,
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    grad: bool = False,
    from_position: int = 0,
    stop_at_layer: int | None = None,
) -> Tensor:
    """The forward pass from ``hook`` on, with ``acts`` as the activation there.

    Returns the logits ``[batch, pos - from_position, d_vocab]`` of positions ``from_position``
    on, or with ``stop_at_layer`` the residual stream entering that block (``n_layers``: the
    final residual, before the head) for every position.

    ``acts`` None runs the whole model from ``tokens`` (which computes the clean activation on
    the way); ``tokens`` are needed too whenever ``hook`` is not a residual-stream hook.
    ``fwd_hooks`` are installed for the run and removed afterwards, also on an exception; those
    at ``hook`` itself see ``acts`` and may replace it. ``grad=True`` records the graph (for
    attributions); otherwise the run is in inference mode.
    """
    layer = resume_layer_for_hook(hook) if acts is not None else None
    if layer is None and tokens is None:
        raise ValueError(f"{hook!r} is not a residual-stream hook: resuming from it needs the tokens")
    device = model.cfg.device
    kwargs: dict[str, Any] = {"stop_at_layer": model.cfg.n_layers if stop_at_layer is None else stop_at_layer}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(device)
    hooks: list = list(fwd_hooks)  # TransformerLens types its hook list loosely
    with torch.enable_grad() if grad else torch.inference_mode():
        if layer is not None and acts is not None:
            if hook.endswith("hook_resid_post"):  # resuming at the next block skips this hook point
                acts = _fire(model, hook, acts, [fn for name, fn in hooks if name == hook])
                hooks = [(name, fn) for name, fn in hooks if name != hook]
            with model.hooks(fwd_hooks=hooks):
                resid = model(acts, start_at_layer=layer, **kwargs)
        else:
            assert tokens is not None
            if acts is not None:
                hooks = [(hook, _replace_with(acts)), *hooks]
            with model.hooks(fwd_hooks=hooks):
                resid = model(tokens.to(device), **kwargs)
        if stop_at_layer is not None:
            return resid
        return unembed(model, resid[:, from_position:])


def unembed(model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos vocab"]:
    """The model's head on a final residual stream: ln_final, the unembedding, a soft cap
    (what ``model(...)`` applies after its last block)."""
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    logits = model.unembed(resid)
    cap = model.cfg.output_logits_soft_cap
    return cap * torch.tanh(logits / cap) if cap and cap > 0 else logits


def _fire(model: HookedTransformer, hook: str, acts: Tensor, fns: list[HookFn]) -> Tensor:
    """``acts`` after the hook functions of ``hook``, in order, as its hook point would run them."""
    point = model.hook_dict[hook]
    for fn in fns:
        out = fn(acts, point)
        acts = acts if out is None else out
    return acts


def _replace_with(acts: Tensor) -> HookFn:
    def hook_fn(act: Tensor, hook: Any) -> Tensor:  # noqa: ARG001 (TransformerLens HookPoint)
        return acts.reshape(act.shape).to(act)

    return hook_fn
