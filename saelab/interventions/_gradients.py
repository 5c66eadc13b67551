"""The machinery that attribution, circuits and their ground truth share: checked inputs, hooks
in forward order, runs from and to a hook, and the leaf nodes spliced in at a hook.

Leaves. At a hook with activation ``x`` and SAE features ``f = encode(x)`` the splice
``x + (decode(f) - decode(f).detach()) + (e - e.detach())`` with ``e = x - decode(f)`` has the
value of ``x`` exactly (the clean forward pass), passes the gradient from above to ``x``
unchanged, and gives ``f`` and ``e``, both detached leaves, the gradient of the metric: the
feature nodes and the error node of that hook. Since the splice is the identity for values and
for gradients, nodes of an earlier hook get their total derivative through the real model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.hook_names import hook_layer, stop_layer_for_hook
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import tokenize
from saelab.forward.resume import HookFn, resume
from saelab.interventions.splice import STATEFUL_NORMS
from saelab.saes import check_compatible, sae_hook_name

# Where a hook sits inside its block, in forward order; hooks outside blocks (embed) come first.
_IN_BLOCK_ORDER = ("hook_resid_pre", "attn.", "hook_attn_out", "hook_resid_mid", "mlp.", "hook_mlp_out")


def hook_order(hook: str) -> tuple[int, int]:
    """A sort key that puts hooks in the order the forward pass reaches them."""
    layer = hook_layer(hook)
    if layer is None:
        return (-1, 0)
    rest = hook.split(".", 2)[2]
    rank = next((i for i, prefix in enumerate(_IN_BLOCK_ORDER) if rest.startswith(prefix)), len(_IN_BLOCK_ORDER))
    return (layer, rank)


def sae_dict(model: HookedTransformer, saes: SAE | Mapping[str, SAE] | Sequence[SAE]) -> dict[str, SAE]:
    """``{hook: sae}`` in forward order, each SAE checked against the model."""
    if isinstance(saes, SAE):
        items = [saes]
    elif isinstance(saes, Mapping):
        items = list(saes.values())
    elif isinstance(saes, Sequence) and not isinstance(saes, str):
        items = list(saes)
    else:
        raise TypeError(f"saes must be an SAE, a mapping of SAEs or a list of SAEs, got {type(saes).__name__}")
    if not items:
        raise ValueError("no SAEs given; pass at least one")
    out: dict[str, SAE] = {}
    for sae in items:
        if not isinstance(sae, SAE):
            raise TypeError(f"expected sae_lens SAEs, got {type(sae).__name__}")
        check_compatible(model, sae)
        hook = sae_hook_name(sae)
        if hook in out:
            raise ValueError(f"two SAEs read the same hook {hook!r}; give one SAE per hook")
        out[hook] = sae
    return dict(sorted(out.items(), key=lambda item: hook_order(item[0])))


def as_tokens(model: HookedTransformer, tokens: Tensor | str) -> Int[Tensor, "batch pos"]:
    """``[batch, pos]`` token ids on the model's device from ids or a text (tokenized with BOS).

    Position 0 is BOS and is never attributed, so at least one more position is needed.
    """
    if isinstance(tokens, str):
        tokens = torch.tensor(tokenize(model, [tokens]).ids)
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens must be a tensor of token ids or a text, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos] or [pos], got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError("tokens are empty: the prompt has no tokens to attribute")
    if tokens.shape[1] < 2:
        raise ValueError(
            f"tokens have {tokens.shape[1]} position(s): position 0 (BOS) is never attributed, "
            "so the prompt needs at least one token after it"
        )
    return tokens.long().to(model.cfg.device)


def clean_activations(model: HookedTransformer, hooks: Sequence[str], tokens: Tensor) -> dict[str, Tensor]:
    """Activations at ``hooks`` from one no-grad pass, as ordinary (not inference) tensors."""
    acts = run_hooks(model, list(hooks), tokens)
    return {hook: act.clone() for hook, act in acts.items()}


def forward_from(
    model: HookedTransformer,
    hook: str,
    tokens: Int[Tensor, "rows pos"],
    x: Float[Tensor, "rows pos d"] | None,
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    stop_at_layer: int | None = None,
) -> Tensor:
    """The forward pass from ``hook`` on with ``x``, the clean activation there (None: from the
    tokens), and ``fwd_hooks`` installed: :func:`saelab.forward.resume.resume`, recording the
    graph when the caller has gradients enabled (the leaves' hooks need it)."""
    grad = torch.is_grad_enabled()
    return resume(model, hook, x, tokens, fwd_hooks=fwd_hooks, grad=grad, stop_at_layer=stop_at_layer)


def run_to(
    model: HookedTransformer,
    hook: str,
    tokens: Int[Tensor, "rows pos"],
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    start: tuple[str, Tensor] | None = None,
) -> Tensor:
    """The activation at ``hook``, from a run that stops as early as it can (from ``start =
    (hook, clean activation)`` on when given, see :func:`forward_from`)."""
    stop = stop_layer_for_hook(hook)
    # With stop_at_layer=L the run returns the input of block L, blocks.L.hook_resid_pre itself.
    reads_output = hook.endswith("hook_resid_pre") and stop is not None
    captured: dict[str, Tensor] = {}

    def capture(act: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001
        captured["x"] = act
        return act

    hooks = list(fwd_hooks) + ([] if reads_output else [(hook, capture)])
    start_hook, x = start if start is not None else (hook, None)
    out = forward_from(model, start_hook, tokens, x, hooks, stop_at_layer=stop)
    return out if reads_output else captured["x"]


def non_bos(x: Tensor) -> Tensor:
    """``[batch, pos, 1]`` mask, True everywhere but position 0 (BOS)."""
    keep = torch.ones(x.shape[0], x.shape[1], 1, dtype=torch.bool, device=x.device)
    keep[:, 0] = False
    return keep


@dataclass
class NodeGrads:
    """Clean node values at one hook and the metric's gradient with respect to them."""

    feats: Float[Tensor, "batch pos d_sae"]
    feat_grads: Float[Tensor, "batch pos d_sae"]
    error: Float[Tensor, "batch pos d_in"]
    error_grads: Float[Tensor, "batch pos d_in"]


@dataclass
class Leaves:
    """The nodes spliced in at one hook, as autograd leaves, and their gradients once computed."""

    feats: Float[Tensor, "batch pos d_sae"]
    """Feature activations (a leaf that requires grad)."""
    error: Float[Tensor, "batch pos d_in"]
    """The SAE's error ``x - decode(f)`` (a leaf that requires grad)."""


def leaf_hook(sae: SAE, store: dict[str, Leaves], name: str) -> HookFn:
    """A forward hook that splices feature and error leaves in at the value of ``x`` (see the
    module docstring) and records them in ``store[name]``."""

    def hook_fn(x: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001 (TransformerLens HookPoint)
        feats = encode_activations(sae, x).detach().requires_grad_()
        recon = sae.decode(feats).to(device=x.device, dtype=x.dtype)
        error = (x.detach() - recon.detach()).requires_grad_()
        store[name] = Leaves(feats=feats, error=error)
        return x + (recon - recon.detach()) + (error - error.detach())

    return hook_fn


def scaled_leaf_hook(sae: SAE, alphas: Float[Tensor, " rows"], store: dict[str, Leaves], name: str) -> HookFn:
    """A forward hook for integrated gradients: at every position but BOS, ``x`` becomes
    ``decode(alpha * f) + alpha * e``, with ``alpha * f`` and ``alpha * e`` as the leaves
    (alpha = 1 is the clean pass, alpha = 0 the baseline ``decode(0)``, BOS left alone)."""

    def hook_fn(x: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001
        with torch.no_grad():
            feats = encode_activations(sae, x)
            error = x - sae.decode(feats).to(device=x.device, dtype=x.dtype)
            if getattr(sae.cfg, "normalize_activations", None) in STATEFUL_NORMS:
                encode_activations(sae, x)  # these SAEs keep each token's norm from encode to one decode
        scale = alphas.to(x.device).reshape(-1, 1, 1)
        feats_s = (feats * scale.to(feats.device, feats.dtype)).requires_grad_()
        error_s = (error * scale.to(error.dtype)).requires_grad_()
        store[name] = Leaves(feats=feats_s, error=error_s)
        moved = sae.decode(feats_s).to(device=x.device, dtype=x.dtype) + error_s
        return torch.where(non_bos(x), moved, x)

    return hook_fn


def gradients(value: Tensor, leaves: Sequence[Leaves]) -> list[tuple[Tensor, Tensor]]:
    """``(d value / d feats, d value / d error)`` for each of ``leaves`` (zeros where unreached)."""
    inputs = [t for leaf in leaves for t in (leaf.feats, leaf.error)]
    grads = torch.autograd.grad(value, inputs, allow_unused=True)
    out = []
    for i, leaf in enumerate(leaves):
        g_f, g_e = grads[2 * i], grads[2 * i + 1]
        out.append(
            (
                g_f if g_f is not None else torch.zeros_like(leaf.feats),
                g_e if g_e is not None else torch.zeros_like(leaf.error),
            )
        )
    return out
