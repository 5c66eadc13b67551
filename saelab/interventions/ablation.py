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
from typing import Any, Literal, NamedTuple

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.hook_names import resume_layer_for_hook
from saelab.evals.ce_loss import validate_tokens, warn_if_no_bos
from saelab.extract.batches import pad_rows
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.extract.tokens import token_strings, tokenize
from saelab.interventions.edits import check_features, set_features
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.splice import STATEFUL_NORMS, Splice, edit_mask
from saelab.saes import check_compatible, sae_hook_name

AblationMode = Literal["zero", "mean"]
MODES: tuple[str, ...] = ("zero", "mean")
DEFAULT_MAX_LOGIT_BYTES = 512 * 2**20
"""Upper bound on the vocabulary-sized blocks one chunk of rows holds at once (fp32 bytes):
SmolLM2's 49,152-token vocabulary makes logits the largest tensors by far."""
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


def prediction_mask(attention_mask: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos_minus_1"]:
    """Real next-token predictions: position i predicts token i+1, both real."""
    real = attention_mask.bool()
    return real[:, :-1] & real[:, 1:]


def next_token_nll(
    logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """``-log p(token[i+1])`` at each position i but the last, in fp32 (logsumexp minus the
    target's logit: no second vocabulary-sized block for the log-softmax)."""
    logits = logits[:, :-1].float()
    target = logits.gather(-1, tokens[:, 1:, None].to(logits.device)).squeeze(-1)
    return logits.logsumexp(dim=-1) - target


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


def logits_from_hook(
    model: HookedTransformer,
    hook: str,
    acts: Float[Tensor, "batch pos d"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    from_position: int = 0,
) -> Float[Tensor, "batch pos_from vocab"]:
    """Logits of the model whose activation at ``hook`` is ``acts`` (the tokens' own one,
    possibly edited): resumed from the hook at residual-stream hooks, a full pass otherwise.

    Only positions from ``from_position`` on are unembedded: past a late hook the unembedding
    (SmolLM2's 49,152-token vocabulary) is a large share of the work, and an edit cannot move
    the logits before it.
    """
    device = model.cfg.device
    mask = attention_mask.to(device)
    resume = resume_layer_for_hook(hook)
    last = model.cfg.n_layers  # stop after the last block: the residual before ln_final
    with torch.inference_mode():
        if resume is not None:
            resid = model(acts, start_at_layer=resume, stop_at_layer=last, attention_mask=mask)
        else:

            def replace(act: Tensor, hook: Any) -> Tensor:  # noqa: ARG002 (TransformerLens HookPoint)
                return acts.reshape(act.shape).to(act)

            resid = model.run_with_hooks(
                tokens.to(device), fwd_hooks=[(hook, replace)], stop_at_layer=last, attention_mask=mask
            )
        return unembed(model, resid[:, from_position:])


def unembed(model: HookedTransformer, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos vocab"]:
    """The model's head on a final residual stream: ln_final, the unembedding, a soft cap."""
    if model.cfg.normalization_type is not None:
        resid = model.ln_final(resid)
    logits = model.unembed(resid)
    cap = model.cfg.output_logits_soft_cap
    return cap * torch.tanh(logits / cap) if cap and cap > 0 else logits


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
    rows = max(1, max_logit_bytes // (_LOGIT_BLOCKS * width * model.cfg.d_vocab * 4))
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
    """Clean and ablated losses, activations and (maybe) logit deltas of some rows."""
    tokens, mask, edit_at = batch.tokens[part], batch.attention_mask[part], edited[part]
    x = run_hooks(model, [hook], tokens, mask)[hook]
    splice = Splice(model=model, sae=sae, edit=set_features(ids, values), hook=hook, mask=edit_at.to(x.device))
    with torch.inference_mode():
        acts = encode_activations(sae, x)[..., ids].float().cpu() * edit_at[..., None]
        x_ablated = splice(x)
    clean_logits = logits_from_hook(model, hook, x, tokens, mask)
    clean = next_token_nll(clean_logits, tokens).cpu()
    ablated_logits = logits_from_hook(model, hook, x_ablated, tokens, mask)
    ablated = next_token_nll(ablated_logits, tokens).cpu()
    logit_delta = None
    if keep_logits:
        logit_delta = (ablated_logits.float() - clean_logits.float()).cpu()
        logit_delta[~mask.bool()] = float("nan")
    return _Rows(clean, ablated, acts, logit_delta)


def row_token_strings(model: HookedTransformer, batch: TokenBatch) -> list[list[str]]:
    """Each row's real tokens as display strings."""
    real = batch.attention_mask.bool()
    return [token_strings(model, row[keep].tolist()) for row, keep in zip(batch.tokens, real, strict=True)]
