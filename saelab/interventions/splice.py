"""The one way saelab edits a model through an SAE: an error-preserving splice at the SAE's hook.

At the hook the activation ``x`` becomes ``x + decode(f_edited) - decode(f)`` with
``f = encode(x)``: the SAE's reconstruction error ``x - decode(f)`` is kept, so an edit that
changes nothing gives back exactly the clean activation (and the clean logits), and only the
edit itself moves the model. Recomputing the error from the *edited* reconstruction would
cancel the edit; :func:`splice_delta` never does.

BOS. From the middle layers on, SmolLM2's BOS residual has a norm far above every other
position's (an attention sink); its features are meaningless and a clamp there would write garbage. Positions in
``skip`` (BOS, pads) are never edited. Runs that go through :class:`Splice` pass the mask;
a bare ``model(...)`` call inside the context leaves position 0 of a multi-token pass alone
(BOS when nothing is padded) and edits every position of a single-token pass, which is each
step of KV-cached generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations
from saelab.saes import check_compatible, sae_hook_name

STATEFUL_NORMS = ("layer_norm", "constant_norm_rescale")
"""SAELens input normalisations that store a per-token norm in encode and delete it in decode."""

FeatureEdit = Callable[[Float[Tensor, "batch pos d_sae"]], Float[Tensor, "batch pos d_sae"]]
"""Maps the SAE's features at the hook to the edited features (same shape; must not modify
its input in place)."""


def splice_delta(sae: SAE, x: Float[Tensor, "batch pos d_in"], edit: FeatureEdit) -> Float[Tensor, "batch pos d_in"]:
    """``decode(edit(f)) - decode(f)`` for ``f = encode(x)``, in x's device and dtype.

    The difference of two decodes (not ``(f' - f) @ W_dec``) so any SAE's decoder, with its
    output normalisation, is honoured; with no change the two decodes are bit-identical.
    """
    feats = encode_activations(sae, x)
    edited = edit(feats)
    if edited.shape != feats.shape:
        raise ValueError(f"an edit must keep the features' shape {tuple(feats.shape)}, got {tuple(edited.shape)}")
    recon_edited = sae.decode(edited)
    if getattr(sae.cfg, "normalize_activations", None) in STATEFUL_NORMS:
        encode_activations(sae, x)  # these SAEs keep each token's norm from encode to one decode
    delta = recon_edited - sae.decode(feats)
    return delta.to(device=x.device, dtype=x.dtype)


def edit_mask(attention_mask: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos"]:
    """Positions an edit may touch: real tokens except the first real one of each row (BOS)."""
    real = attention_mask.bool()
    first = real.to(torch.int8).argmax(dim=1)
    mask = real.clone()
    mask[torch.arange(real.shape[0]), first] = False
    return mask


def default_mask(x: Tensor) -> Bool[Tensor, "batch pos"]:
    """Positions edited when no mask is given: all but position 0 of a multi-token pass."""
    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if x.shape[1] > 1:
        mask[:, 0] = False
    return mask


@dataclass
class Splice:
    """An SAE installed at its hook with an edit; use it through :func:`spliced`.

    ``mask`` (``[batch, pos]``, True = edit) is set by the runners that know the tokens
    (:meth:`run`); ``None`` falls back to :func:`default_mask`.
    """

    model: HookedTransformer
    sae: SAE
    edit: FeatureEdit
    hook: str
    mask: Bool[Tensor, "batch pos"] | None = None
    calls: int = field(default=0)
    """How many times the hook fired (each KV-cached generation step is one)."""

    def __call__(self, x: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG002 (TransformerLens HookPoint)
        self.calls += 1
        mask = self.mask if self.mask is not None and self.mask.shape == x.shape[:2] else default_mask(x)
        delta = splice_delta(self.sae, x, self.edit)
        keep = mask.to(x.device).reshape(*mask.shape, *([1] * (x.ndim - 2)))
        return x + torch.where(keep, delta, torch.zeros_like(delta))

    def run(self, tokens: Tensor, *, edit_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``model(tokens, **kwargs)`` with the edit applied where ``edit_mask`` says."""
        self.mask = edit_mask
        try:
            return self.model(tokens, **kwargs)
        finally:
            self.mask = None


def no_edit(feats: Tensor) -> Tensor:
    return feats


@contextmanager
def spliced(model: HookedTransformer, sae: SAE, edit: FeatureEdit | None = None) -> Iterator[Splice]:
    """Install ``sae`` at its hook with ``edit`` for the duration of the ``with`` block.

    Every forward pass of ``model`` inside the block is edited (``model(...)``,
    ``model.generate(...)``, ``run_with_cache``); the hook is removed on exit, also when the
    block raises. With ``edit=None`` the model's outputs are unchanged.
    """
    check_compatible(model, sae)
    hook = sae_hook_name(sae)
    installed = Splice(model=model, sae=sae, edit=edit or no_edit, hook=hook)
    with model.hooks(fwd_hooks=[(hook, installed)]):
        yield installed
