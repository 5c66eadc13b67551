"""Ablation: zero or mean-ablate SAE features and measure the change in next-token loss and
logits at every position.

Every edit goes through the error-preserving splice (:mod:`saelab.interventions.splice`): at
the SAE's hook the activation becomes ``x + decode(f') - decode(f)``, where ``f'`` is ``f``
with the ablated features set to 0 (``mode="zero"``) or to their mean activation on real text
(``mode="mean"``, :attr:`FeatureStats.mean`). The reconstruction error is kept, so what moves
the model is the ablation alone. BOS (the first real token of each row) and pads are never
edited. At residual-stream hooks the model runs to the hook once and both the clean and the
ablated pass resume from there (``start_at_layer``); other hooks run full forward passes.

Losses are per position: ``loss[b, i] = -log p(token[i+1] | tokens[<=i])``, NaN where position
i or i+1 is a pad. The prediction made at BOS is a real one; no edit can reach it (the model is
causal and BOS is never edited), so its delta is exactly 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.evals.ce_loss import validate_tokens, warn_if_no_bos
from saelab.extract.batches import pad_rows
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import token_strings, tokenize
from saelab.forward.edited_rows import (
    DEFAULT_MAX_LOGIT_BYTES,
    EditedChunk,
    HookActs,
    Reduce,
    rows_per_pass,
    run_edited_rows,
)
from saelab.forward.losses import next_token_nll, prediction_mask
from saelab.interventions.edits import check_features, set_features
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.splice import STATEFUL_NORMS, edit_mask, splice_delta
from saelab.saes import check_compatible, sae_hook_name

AblationMode = Literal["zero", "mean"]
MODES: tuple[str, ...] = ("zero", "mean")
_LOGIT_BLOCKS = 3  # clean logits, ablated logits, one temporary of the same size


class TokenBatch(NamedTuple):
    """Token rows and their attention mask (1 = real token)."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]


def as_token_batch(
    model: HookedTransformer,
    tokens_or_texts: Tensor | Sequence[str],
    attention_mask: Tensor | None = None,
) -> TokenBatch:
    """Texts tokenized by saelab's one policy (BOS prepended) and right-padded, or token rows
    checked; rows without a mask are all real."""
    if isinstance(tokens_or_texts, Tensor):
        tokens, mask = validate_tokens(tokens_or_texts, attention_mask)
        mask = torch.ones_like(tokens) if mask is None else mask.long()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every row needs at least one real token; some attention_mask rows are all zero")
        warn_if_no_bos(model, tokens, mask, exclude_bos=True)
        return TokenBatch(tokens.cpu(), mask.cpu())
    if attention_mask is not None:
        raise ValueError("attention_mask goes with token ids; texts are tokenized and masked here")
    tokenized = tokenize(model, tokens_or_texts)
    width = max(2, max(len(ids) for ids in tokenized.ids))
    pad_id = getattr(model.tokenizer, "pad_token_id", None) or 0
    batch = pad_rows(tokenized, range(len(tokenized.ids)), width, "right", True, int(pad_id))
    return TokenBatch(batch.tokens, batch.attention_mask)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")


def check_sae(model: HookedTransformer, sae: SAE) -> str:
    """The SAE's hook, after the checks every ablation shares."""
    check_compatible(model, sae)
    norm = getattr(sae.cfg, "normalize_activations", "none")
    if norm in STATEFUL_NORMS:
        # SAELens keeps these norms' per-token statistics on the SAE between one encode and
        # one decode; the batched ablations decode many edited rows per encode.
        raise ValueError(f"SAEs with run-time normalisation {norm!r} cannot be spliced; fold it into the weights")
    return sae_hook_name(sae)


def ablation_values(
    model: HookedTransformer, sae: SAE, features: Sequence[int], mode: str, stats: FeatureStats | None
) -> Float[Tensor, " n_features"]:
    """The value each ablated feature is set to: 0, or its mean activation on real text."""
    check_mode(mode)
    if mode == "zero":
        return torch.zeros(len(features))
    if stats is None:
        stats = feature_stats(model, sae)
    if stats.d_sae != sae.cfg.d_sae:
        raise ValueError(f"FeatureStats are for d_sae={stats.d_sae}, this SAE has {sae.cfg.d_sae}")
    return stats.mean[list(features)].float().cpu()


@dataclass(frozen=True)
class Ablation:
    """Per-position effect of ablating ``features`` together (one edited run per text)."""

    features: list[int]
    mode: str
    values: Float[Tensor, " n_features"]
    """What each feature was set to (0, or its mean for ``mode="mean"``)."""
    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    edited: Bool[Tensor, "batch pos"]
    """Positions the splice edited: real tokens but BOS."""
    activations: Float[Tensor, "batch pos n_features"]
    """Each feature's clean activation at the edited positions (0 at BOS and pads)."""
    clean_loss: Float[Tensor, "batch pos_minus_1"]
    """Next-token loss of the clean model; NaN where not a real prediction."""
    ablated_loss: Float[Tensor, "batch pos_minus_1"]
    loss_delta: Float[Tensor, "batch pos_minus_1"]
    """``ablated_loss - clean_loss``: positive where the features helped predict the next token."""
    logit_delta: Float[Tensor, "batch pos vocab"] | None
    """Ablated minus clean logits (NaN at pads); only with ``keep_logits=True``."""
    token_strs: list[list[str]]
    """Each row's real tokens as strings."""

    @property
    def mean_loss_delta(self) -> float:
        """Mean loss change over every real prediction."""
        return float(self.loss_delta.nanmean())

    def to_frame(self) -> pd.DataFrame:
        """One row per real token: ``text, position, token, next_token, edited``, one
        ``activation_<feature>`` column per feature, ``clean_loss, ablated_loss, loss_delta``
        (NaN at each row's last token, which predicts nothing)."""
        return tidy_positions(self.token_strs, self.attention_mask, self.edited, self.activations, self.features, {
            "clean_loss": self.clean_loss, "ablated_loss": self.ablated_loss, "loss_delta": self.loss_delta,
        })  # fmt: skip


def tidy_positions(
    token_strs: list[list[str]],
    attention_mask: Tensor,
    edited: Tensor,
    activations: Tensor,
    features: Sequence[int],
    losses: dict[str, Tensor],
) -> pd.DataFrame:
    real = attention_mask.bool()
    rows, cols = real.nonzero(as_tuple=True)
    per_row = real.sum(dim=1)
    offset = real.to(torch.int8).argmax(dim=1)
    flat_tokens = [s for strs in token_strs for s in strs]
    index = (rows.tolist(), (cols - offset[rows]).tolist())
    nexts = [token_strs[r][i + 1] if i + 1 < int(per_row[r]) else "" for r, i in zip(*index, strict=True)]
    frame = pd.DataFrame({"text": index[0], "position": index[1], "token": flat_tokens, "next_token": nexts})
    frame["edited"] = edited[rows, cols].numpy()
    for j, feature in enumerate(features):
        frame[f"activation_{feature}"] = activations[rows, cols, j].numpy()
    pad = torch.full((real.shape[0], 1), float("nan"))
    for name, values in losses.items():
        frame[name] = torch.cat([values, pad], dim=1)[rows, cols].numpy()
    return frame


def ablate(
    model: HookedTransformer,
    sae: SAE,
    features: Sequence[int],
    tokens: Tensor | Sequence[str],
    *,
    mode: AblationMode = "zero",
    stats: FeatureStats | None = None,
    attention_mask: Tensor | None = None,
    keep_logits: bool = False,
    max_logit_bytes: int = DEFAULT_MAX_LOGIT_BYTES,
) -> Ablation:
    """Ablate ``features`` together at ``sae``'s hook and measure the per-position change in
    next-token loss (and logits, with ``keep_logits``) against the clean model.

    ``tokens`` are ``[batch, pos]`` ids with BOS first (``attention_mask`` for padded rows) or
    a list of texts (tokenized with BOS and right-padded here). ``mode="zero"`` sets the
    features to 0; ``"mean"`` to their mean activation (``stats``; measured and cached on the
    labelled dataset when None). ``logit_delta`` is ``[batch, pos, d_vocab]`` fp32 (about
    200 KB per position for SmolLM2), so it is kept only when asked; rows are processed in
    chunks that keep the vocabulary-sized blocks under ``max_logit_bytes`` either way.
    """
    hook = check_sae(model, sae)
    ids = check_features(features, sae.cfg.d_sae)
    values = ablation_values(model, sae, ids, mode, stats)
    batch = as_token_batch(model, tokens, attention_mask)
    edited = edit_mask(batch.attention_mask)
    n_rows, width = batch.tokens.shape
    rows = rows_per_pass(max_logit_bytes, width, model.cfg.d_vocab, _LOGIT_BLOCKS)
    parts = [_ablate_rows(model, sae, hook, ids, values, batch, edited, slice(s, s + rows), keep_logits)
             for s in range(0, n_rows, rows)]  # fmt: skip
    clean, ablated = torch.cat([p.clean for p in parts]), torch.cat([p.ablated for p in parts])
    acts = torch.cat([p.activations for p in parts])
    logit_delta = torch.cat([p.logit_delta for p in parts if p.logit_delta is not None]) if keep_logits else None
    predict = prediction_mask(batch.attention_mask)
    nan = torch.tensor(float("nan"))
    clean, ablated = torch.where(predict, clean, nan), torch.where(predict, ablated, nan)
    return Ablation(
        features=ids, mode=mode, values=values, tokens=batch.tokens, attention_mask=batch.attention_mask,
        edited=edited, activations=acts, clean_loss=clean, ablated_loss=ablated, loss_delta=ablated - clean,
        logit_delta=logit_delta, token_strs=row_token_strings(model, batch),
    )  # fmt: skip


class _Rows(NamedTuple):
    clean: Tensor
    ablated: Tensor
    activations: Tensor
    logit_delta: Tensor | None


def _ablate_rows(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    ids: list[int],
    values: Tensor,
    batch: TokenBatch,
    edited: Tensor,
    part: slice,
    keep_logits: bool,
) -> _Rows:
    """Clean and ablated losses, activations and (maybe) logit deltas of some rows: the clean
    rows, then one edited row per text, through the engine (one chunk each)."""
    tokens, mask, edit_at = batch.tokens[part], batch.attention_mask[part], edited[part]
    x = run_hooks(model, [hook], tokens, mask)[hook]
    keep = edit_at.to(x.device).reshape(*edit_at.shape, *([1] * (x.ndim - 2)))
    with torch.inference_mode():
        acts = encode_activations(sae, x)[..., ids].float().cpu() * edit_at[..., None]
        delta = torch.where(keep, splice_delta(sae, x, set_features(ids, values)), 0.0)
    clean = HookActs(hook, x, tokens, mask)
    n, width = tokens.shape
    nll = {name: torch.full((n, width - 1), float("nan")) for name in ("clean", "ablated")}
    clean_logits: list[Tensor] = []
    logit_delta = torch.full((n, width, model.cfg.d_vocab), float("nan")) if keep_logits else None

    def reduce(name: str) -> Reduce:
        def keep_rows(chunk: EditedChunk) -> None:  # one chunk: every row of the part
            w = chunk.tokens.shape[1]  # past it, every row is padding
            nll[name][:, : w - 1] = next_token_nll(chunk.logits, chunk.tokens).cpu()
            if logit_delta is not None and name == "clean":
                clean_logits.append(chunk.logits.float())
            elif logit_delta is not None:
                logit_delta[:, :w] = (chunk.logits.float() - clean_logits.pop()).cpu()

        return keep_rows

    run_edited_rows(model, clean, torch.arange(n), reduce("clean"), rows_per_chunk=n)
    run_edited_rows(model, clean, torch.arange(n), reduce("ablated"), rows_per_chunk=n, deltas=lambda r: delta[r])
    if logit_delta is not None:
        logit_delta[~mask.bool()] = float("nan")
    return _Rows(nll["clean"], nll["ablated"], acts, logit_delta)


def row_token_strings(model: HookedTransformer, batch: TokenBatch) -> list[list[str]]:
    """Each row's real tokens as display strings."""
    real = batch.attention_mask.bool()
    return [token_strings(model, row[keep].tolist()) for row, keep in zip(batch.tokens, real, strict=True)]
