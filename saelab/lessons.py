"""Teaching helpers: the deliberate mistakes and side-by-side views the notebooks show.

* :func:`dense_vs_sparse`: the dense residual stream next to the SAE's sparse code for one
  text (notebook 01).
* :func:`naive_mean_features`: mean features over *every* position of a padded batch, pads
  and BOS included: wrong on purpose, measured beside the masked mean (notebook 02).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.batches import iter_batches, pad_rows
from saelab.extract.extract import check_finite, encode_batch
from saelab.extract.hooks import encode_activations, hook_activations
from saelab.extract.tokens import token_strings, tokenize, tokenizer_of
from saelab.saes import check_compatible, sae_hook_name


@dataclass(frozen=True)
class DenseVsSparse:
    """How dense the residual stream is next to how sparse the SAE's features are, for one text."""

    tokens: list[str]
    resid: Float[Tensor, "pos d_model"]
    """Residual activations at the SAE's hook (pooled positions only)."""
    codes: Float[Tensor, "pos d_sae"]
    """The SAE's sparse code: feature activations at the same positions."""
    resid_nonzero_frac: float
    """Share of (token, dim) residual entries that are non-zero (typically ~1.0)."""
    feature_active_frac: float
    """Share of (token, feature) entries that are active (> 0)."""
    l0_per_token: Int[Tensor, " pos"]
    """Number of active features at each token."""
    n_features_active_anywhere: int
    """Features active on at least one token of the text."""


def dense_vs_sparse(model: HookedTransformer, sae: SAE, text: str, *, exclude_bos: bool = True) -> DenseVsSparse:
    """The phase-1 comparison: fraction non-zero in the residual vs active SAE features, L0 per token."""
    check_compatible(model, sae)
    hook = sae_hook_name(sae)
    tokenized = tokenize(model, [text])
    batch = next(iter_batches(tokenized, 1, "right", exclude_bos, sae.cfg.d_sae))
    acts = hook_activations(model, hook, batch.tokens, batch.attention_mask)
    with torch.inference_mode():
        feats = encode_activations(sae, acts)
    keep = batch.pool_mask[0]
    resid = acts[0][keep.to(acts.device)].float().cpu()
    codes = feats[0][keep.to(feats.device)].float().cpu()
    active = codes > 0
    ids = tokenized.without_bos()[0] if exclude_bos else tokenized.ids[0]
    return DenseVsSparse(
        tokens=token_strings(model, ids),
        resid=resid,
        codes=codes,
        resid_nonzero_frac=float((resid != 0).float().mean()),
        feature_active_frac=float(active.float().mean()),
        l0_per_token=active.sum(dim=1),
        n_features_active_anywhere=int(active.any(dim=0).sum()),
    )


def naive_mean_features(
    model: HookedTransformer, sae: SAE, texts: Sequence[str], *, batch_size: int = 16
) -> Float[Tensor, "n_texts d_sae"]:
    """Mean features the way a first attempt often computes them: **wrong on purpose**, kept only
    to measure how much masking matters, side by side with :func:`extract_features`.

    Texts are batched in the given order and right-padded to the longest in the batch; the
    model itself sees the attention mask (so this isolates the pooling mistake), but the mean
    runs over every position of the padded row: pads and BOS included. A text's result
    therefore depends on what else is in its batch.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_compatible(model, sae)
    hook = sae_hook_name(sae)
    tokenized = tokenize(model, texts)
    out = torch.zeros(len(texts), sae.cfg.d_sae)
    pad = tokenizer_of(model).pad_token_id
    pad_id = pad if isinstance(pad, int) else 0
    for start in range(0, len(texts), batch_size):
        take = list(range(start, min(start + batch_size, len(texts))))
        width = max(len(tokenized.ids[i]) for i in take)
        batch = pad_rows(tokenized, take, width, "right", False, pad_id)
        feats = encode_batch(sae, hook_activations(model, hook, batch.tokens, batch.attention_mask), batch)
        out[batch.index] = feats.float().mean(dim=1).cpu()
    return check_finite(out, "naively pooled features")
