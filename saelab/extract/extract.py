"""Masked SAE feature extraction: texts -> activations at each SAE's hook -> features.

Pooling only ever sees real tokens; the BOS position, which soaks up huge activations, is
left out by default. Texts run in length-sorted batches (:mod:`saelab.extract.batches`),
and a text's result does not depend on what else shares its batch or on the padding side.

* :func:`extract_features`: pooled features ``[n_texts, d_sae]`` of one SAE.
* :func:`extract_per_token`: every kept token's features, as :class:`PerTokenFeatures`.
* ``*_multi``: the same for several SAEs (say, one per layer) from one model pass.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from jaxtyping import Bool, Float
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract.batches import DEFAULT_MAX_BATCH_BYTES, Batch, PaddingSide, iter_batches
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.per_token import POOLINGS, PerTokenFeatures, Pooling, SparseRows, assemble_per_token, split_rows
from saelab.extract.residuals import ResidualWriter, load_residuals
from saelab.extract.tokens import Tokenized, tokenize
from saelab.saes import check_compatible, sae_hook_name

log = logging.getLogger(__name__)


def extract_features(
    model: HookedTransformer,
    sae: SAE,
    texts: Sequence[str],
    *,
    pooling: Pooling | None = "mean",
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> Float[Tensor, "n_texts d_sae"]:
    """SAE features of ``texts`` at the SAE's hook, pooled (mean/max/sum/last) over real
    tokens: ``[n_texts, d_sae]``, CPU, float32. Texts longer than the model's context are
    truncated with a :class:`~saelab.extract.tokens.TextTooLongWarning`.

    ``pooling=None`` is deprecated: it returns per-token features, which
    :func:`extract_per_token` now gives.
    """
    if pooling is None:
        warnings.warn(
            "extract_features(..., pooling=None) is deprecated and will be removed in the next release; "
            "use saelab.extract_per_token(model, sae, texts) for per-token features.",
            DeprecationWarning,
            stacklevel=2,
        )
        # The old call's return type, kept for one release.
        return extract_per_token(  # pyright: ignore[reportReturnType]
            model, sae, texts, exclude_bos=exclude_bos, batch_size=batch_size,
            padding_side=padding_side, max_batch_bytes=max_batch_bytes, progress=progress,
        )  # fmt: skip
    return extract_features_multi(
        model, {"sae": sae}, texts, pooling=pooling, exclude_bos=exclude_bos, batch_size=batch_size,
        padding_side=padding_side, max_batch_bytes=max_batch_bytes, progress=progress,
    )["sae"]  # fmt: skip


def extract_per_token(
    model: HookedTransformer,
    sae: SAE,
    texts: Sequence[str],
    *,
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> PerTokenFeatures:
    """Every kept token's SAE features (no pads; no BOS when ``exclude_bos``), stored
    sparsely with the token strings."""
    return extract_per_token_multi(
        model, {"sae": sae}, texts, exclude_bos=exclude_bos, batch_size=batch_size,
        padding_side=padding_side, max_batch_bytes=max_batch_bytes, progress=progress,
    )["sae"]  # fmt: skip


def extract_features_multi(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    texts: Sequence[str],
    *,
    pooling: Pooling = "mean",
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> dict[str, Float[Tensor, "n_texts d_sae"]]:
    """:func:`extract_features` for several SAEs from one model pass per batch; each result
    equals what :func:`extract_features` gives for that SAE alone. ``{name: [n_texts, d_sae]}``
    in ``saes``' order."""
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; valid: {list(POOLINGS)} (per-token: extract_per_token_multi)")
    pooled = {name: torch.zeros(len(texts), sae.cfg.d_sae) for name, sae in saes.items()}
    _, stream = _stream(model, saes, texts, exclude_bos, batch_size, padding_side, max_batch_bytes, progress)
    for batch, acts in stream:
        for name, acts_BPF in acts.items():
            pooled[name][batch.index] = pool(acts_BPF, batch.pool_mask, pooling).float().cpu()
    for name, values in pooled.items():
        check_finite(values, f"pooled features of {name!r}")
    return pooled


def extract_per_token_multi(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    texts: Sequence[str],
    *,
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: PaddingSide = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
    residual_root: Path | None = None,
) -> dict[str, PerTokenFeatures]:
    """:func:`extract_per_token` for several SAEs from one model pass per batch.

    With ``residual_root``, the model's activations are read from the residual cache there
    when every hook has an entry for these texts (no model pass), and otherwise kept there
    for the next SAE (:mod:`saelab.extract.residuals`)."""
    rows: dict[str, list[tuple[int, SparseRows]]] = {name: [] for name in saes}
    tokenized, stream = _stream(
        model, saes, texts, exclude_bos, batch_size, padding_side, max_batch_bytes, progress, residual_root
    )
    for batch, acts in stream:
        for name, acts_BPF in acts.items():
            rows[name].extend(split_rows(acts_BPF, batch))
    return {
        name: assemble_per_token(model, tokenized, rows[name], exclude_bos, sae.cfg.d_sae) for name, sae in saes.items()
    }


def pool(
    acts: Float[Tensor, "batch pos d"], mask: Bool[Tensor, "batch pos"], pooling: Pooling
) -> Float[Tensor, "batch d"]:
    """Pool over positions where ``mask`` is True. Pads may hold anything, even NaN."""
    keep = mask.unsqueeze(-1)
    count = mask.sum(dim=1, keepdim=True)
    if (count == 0).any():
        raise ValueError("A text has no tokens left to pool (it was empty after excluding BOS).")
    if pooling == "sum":
        return torch.where(keep, acts, 0).sum(dim=1)
    if pooling == "mean":
        return torch.where(keep, acts, 0).sum(dim=1) / count.to(acts.dtype)
    if pooling == "max":
        return torch.where(keep, acts, -torch.inf).amax(dim=1)
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask, positions, -1).amax(dim=1)
        return acts[torch.arange(acts.shape[0], device=acts.device), last]
    raise ValueError(f"Unknown pooling {pooling!r}; valid: {POOLINGS}")


def check_finite(x: Tensor, what: str) -> Tensor:
    """``x``, or a FloatingPointError that says where NaN/inf came from."""
    if not torch.isfinite(x).all():
        raise FloatingPointError(
            f"Non-finite values in {what}: the model or SAE produced NaN/inf "
            "(check the SAE's dtype and that it matches the model)."
        )
    return x


def encode_batch(sae: SAE, acts: Float[Tensor, "batch pos d_in"], batch: Batch) -> Float[Tensor, "batch pos d_sae"]:
    """The SAE's features of one batch's activations, on the batch's device."""
    with torch.inference_mode():
        feats = encode_activations(sae, acts)
    return feats.to(batch.pool_mask.device) if feats.device != batch.pool_mask.device else feats


def _stream(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    texts: Sequence[str],
    exclude_bos: bool,
    batch_size: int,
    padding_side: PaddingSide,
    max_batch_bytes: int,
    progress: bool | None,
    residual_root: Path | None = None,
) -> tuple[Tokenized, Iterator[tuple[Batch, dict[str, Tensor]]]]:
    """Tokenize, then yield each batch with every SAE's features from one model pass (or
    from the residual cache under ``residual_root``, when it holds every hook)."""
    _validate_options(batch_size, padding_side)
    if not saes:
        raise ValueError("saes is empty; pass at least one SAE, e.g. {'layer 20': sae}.")
    for sae in saes.values():
        check_compatible(model, sae)
    hooks = {name: sae_hook_name(sae) for name, sae in saes.items()}
    tokenized = tokenize(model, texts)
    if exclude_bos and not tokenized.has_bos:
        log.debug("exclude_bos=True but this model prepends no BOS; nothing to exclude")
    widest = max(sae.cfg.d_sae for sae in saes.values())
    batches = list(iter_batches(tokenized, batch_size, padding_side, exclude_bos, widest, max_batch_bytes))
    show = progress if progress is not None else len(batches) > 4
    needed = sorted(set(hooks.values()))
    cached = {h: load_residuals(model, h, texts, None, residual_root) for h in needed} if residual_root else {}
    reuse = bool(cached) and all(entry is not None for entry in cached.values())
    writer = None
    if residual_root is not None and not reuse:
        missing = [h for h in needed if cached.get(h) is None]
        writer = ResidualWriter(model, texts, tokenized, missing, residual_root)
    desc = f"features @ {', '.join(dict.fromkeys(hooks.values()))}" + (" (cached activations)" if reuse else "")

    def generate() -> Iterator[tuple[Batch, dict[str, Tensor]]]:
        for batch in tqdm(batches, desc=desc, disable=not show, leave=False):
            if reuse:
                device = model.cfg.device or "cpu"
                acts = {h: e.padded(batch.index, batch.attention_mask).to(device) for h, e in cached.items() if e}
            else:
                acts = run_hooks(model, needed, batch.tokens, batch.attention_mask)
                if writer is not None:
                    writer.add(batch.index, batch.attention_mask, acts)
            yield batch, {name: encode_batch(sae, acts[hooks[name]], batch) for name, sae in saes.items()}
        if writer is not None:
            writer.finish()

    return tokenized, generate()


def _validate_options(batch_size: int, padding_side: str) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
