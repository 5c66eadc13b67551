"""The effect of ablating each of many features, one at a time, on the next-token loss of a set
of texts: :func:`ablate` for every feature, batched.

Why it is fast. The model runs to the SAE's hook once per batch of texts and the SAE encodes
once; each (feature, text) pair then becomes one row ``x + delta`` of an edited batch that
resumes from the hook (``start_at_layer``), so the layers below the hook run once per text,
not once per feature. Rows of many features share one pass, chunked so the logits stay under
a memory bound. Under zero-ablation, a pair where the feature is exactly 0 at every edited
position of the text is not run at all: its edit is ``decode(f) - decode(f) = 0``, so its
effect is exactly zero (this is not an approximation). Hooks that are not the whole residual
stream (attention or MLP outputs) run full forward passes with the edit added at the hook.

The edit of a row is the splice's (``decode(f') - decode(f)`` with the feature set to 0 or its
mean), computed from the features encoded once, at the positions where the feature changes
(elsewhere the splice's delta is exactly 0 too); BOS and pads are never edited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations, run_hooks
from saelab.forward.edited_rows import (
    DEFAULT_MAX_LOGIT_BYTES,
    EditedChunk,
    HookActs,
    rows_per_pass,
    run_edited_rows,
)
from saelab.forward.losses import next_token_nll, prediction_mask
from saelab.interventions.ablation import (
    AblationMode,
    TokenBatch,
    ablation_values,
    as_token_batch,
    check_sae,
    edit_mask,
    row_token_strings,
)
from saelab.interventions.edits import check_features
from saelab.interventions.feature_scale import FeatureStats

_LOGIT_BLOCKS = 3  # edited logits, one temporary of their size, and their difference from clean


@dataclass(frozen=True)
class FeatureEffects:
    """Per-position loss change of ablating each feature on its own, on every text."""

    features: list[int]
    mode: str
    tokens: Int[Tensor, "n_texts pos"]
    attention_mask: Int[Tensor, "n_texts pos"]
    loss_delta: Float[Tensor, "n_features n_texts pos_minus_1"]
    """Ablated minus clean next-token loss at each position; NaN where not a real prediction,
    exactly 0 for pairs that were not run (see ``ran``)."""
    activations: Float[Tensor, "n_features n_texts pos"]
    """Each feature's clean activation at the edited positions (0 at BOS and pads)."""
    ran: Bool[Tensor, "n_features n_texts"]
    """Pairs that were run; under zero-ablation the others have the feature at 0 on every
    edited position, so their effect is exactly zero."""
    clean_loss: Float[Tensor, "n_texts pos_minus_1"]
    mean_logit_delta: Float[Tensor, "n_features vocab"] | None
    """Mean ablated-minus-clean logits over the positions where the feature fired (NaN rows
    for features that never fired); only with ``keep_logits=True``."""
    token_strs: list[list[str]]

    def fired(self) -> Bool[Tensor, "n_features n_texts pos"]:
        """Where each feature fired (non-zero at an edited position)."""
        return self.activations != 0

    def summary(self) -> pd.DataFrame:
        """One row per feature: ``feature, n_active`` (positions where it fired), ``n_texts``
        (texts where it fired), ``mean_delta_active`` (mean loss change of the predictions made
        at those positions), ``mean_delta`` (over every real prediction of every text, skipped
        pairs counting 0), ``max_delta`` (largest loss change anywhere)."""
        fired = self.fired()
        at_fired = fired[..., :-1] & ~self.loss_delta.isnan()
        n_at = at_fired.sum(dim=(1, 2))
        sum_at = torch.where(at_fired, self.loss_delta, 0.0).sum(dim=(1, 2))
        flat = self.loss_delta.flatten(1)
        real = ~flat.isnan()
        return pd.DataFrame({
            "feature": self.features,
            "n_active": fired.sum(dim=(1, 2)).numpy(),
            "n_texts": fired.any(dim=2).sum(dim=1).numpy(),
            "mean_delta_active": (sum_at / n_at).numpy(),
            "mean_delta": (torch.where(real, flat, 0.0).sum(dim=1) / real.sum(dim=1)).numpy(),
            "max_delta": torch.where(real, flat, -torch.inf).amax(dim=1).numpy(),
        })  # fmt: skip

    def to_frame(self, *, include_skipped: bool = False) -> pd.DataFrame:
        """Tidy rows ``feature, text, position, token, next_token, activation, loss_delta`` for
        every real prediction of the pairs that ran (all pairs with ``include_skipped``)."""
        real = prediction_mask(self.attention_mask)
        keep = real[None] & (torch.ones_like(self.ran) if include_skipped else self.ran)[..., None]
        f, t, p = (i.numpy() for i in keep.nonzero(as_tuple=True))
        offset = self.attention_mask.bool().to(torch.int8).argmax(dim=1).numpy()
        pos = p - offset[t]
        strs = self.token_strs
        return pd.DataFrame({
            "feature": np.asarray(self.features)[f],
            "text": t,
            "position": pos,
            "token": [strs[ti][pi] for ti, pi in zip(t, pos, strict=True)],
            "next_token": [strs[ti][pi + 1] for ti, pi in zip(t, pos, strict=True)],
            "activation": self.activations[f, t, p].numpy(),
            "loss_delta": self.loss_delta[f, t, p].numpy(),
        })  # fmt: skip


@dataclass
class _Run:
    """What every text batch of one :func:`feature_effects` call shares."""

    model: HookedTransformer
    sae: SAE
    hook: str
    ids: Tensor
    values: Tensor
    mode: str
    rows: int
    loss_delta: Tensor
    activations: Tensor
    ran: Tensor
    clean_loss: Tensor
    logit_sum: Tensor | None
    logit_count: Tensor
    bar: tqdm


def feature_effects(
    model: HookedTransformer,
    sae: SAE,
    features: Sequence[int],
    tokens_or_texts: Tensor | Sequence[str],
    *,
    mode: AblationMode = "zero",
    stats: FeatureStats | None = None,
    attention_mask: Tensor | None = None,
    batch_size: int = 8,
    keep_logits: bool = False,
    max_logit_bytes: int = DEFAULT_MAX_LOGIT_BYTES,
    progress: bool | None = None,
) -> FeatureEffects:
    """Ablate each of ``features`` on its own on every text and record the per-position change
    in next-token loss; the same numbers as calling :func:`ablate` once per feature.

    ``tokens_or_texts``: texts (tokenized with BOS and right-padded) or ``[n_texts, pos]`` ids
    with BOS first (``attention_mask`` for padded rows). ``batch_size`` texts share a pass to
    the hook; edited rows are chunked so ``[rows, pos, d_vocab]`` blocks stay under
    ``max_logit_bytes``. Under ``mode="zero"`` the (feature, text) pairs where the feature is
    exactly 0 at every edited position are skipped: their effect is exactly zero, not
    approximately. ``keep_logits`` also averages the logit change per feature over the
    positions where it fired (``[n_features, d_vocab]``). ``progress``: a tqdm bar over the
    pairs; None shows it when there are more than 4 chunks of rows. The result holds two dense
    ``[n_features, n_texts, pos]`` fp32 tensors (loss deltas and activations).
    """
    hook = check_sae(model, sae)
    ids = check_features(features, sae.cfg.d_sae)
    values = ablation_values(model, sae, ids, mode, stats)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch = as_token_batch(model, tokens_or_texts, attention_mask)
    (n_texts, width), n_feats, vocab = batch.tokens.shape, len(ids), model.cfg.d_vocab
    rows = rows_per_pass(max_logit_bytes, width, vocab, _LOGIT_BLOCKS)
    show = progress if progress is not None else n_feats * n_texts > 4 * rows
    run = _Run(
        model=model, sae=sae, hook=hook, ids=torch.tensor(ids), values=values, mode=mode, rows=rows,
        loss_delta=torch.zeros(n_feats, n_texts, width - 1), activations=torch.zeros(n_feats, n_texts, width),
        ran=torch.zeros(n_feats, n_texts, dtype=torch.bool), clean_loss=torch.zeros(n_texts, width - 1),
        logit_sum=torch.zeros(n_feats, vocab, dtype=torch.float64) if keep_logits else None,
        logit_count=torch.zeros(n_feats, dtype=torch.float64),
        bar=tqdm(total=n_feats * n_texts, desc=f"feature effects @ {hook}", disable=not show, leave=False),
    )  # fmt: skip
    per_pass = min(batch_size, rows)  # the clean logits of one pass's texts stay within the budget too
    with run.bar:
        for start in range(0, n_texts, per_pass):
            _text_batch(run, batch, slice(start, min(start + per_pass, n_texts)))
    predict = prediction_mask(batch.attention_mask)
    nan = torch.tensor(float("nan"))
    mean_logits = None
    if run.logit_sum is not None:
        mean_logits = (run.logit_sum / run.logit_count[:, None]).float()
    return FeatureEffects(
        features=ids, mode=mode, tokens=batch.tokens, attention_mask=batch.attention_mask,
        loss_delta=torch.where(predict[None], run.loss_delta, nan), activations=run.activations, ran=run.ran,
        clean_loss=torch.where(predict, run.clean_loss, nan), mean_logit_delta=mean_logits,
        token_strs=row_token_strings(model, batch),
    )  # fmt: skip


def _text_batch(run: _Run, batch: TokenBatch, part: slice) -> None:
    """One pass to the hook for some texts, then every (feature, text) pair of them in chunks."""
    tokens, mask = batch.tokens[part], batch.attention_mask[part]
    width = int(mask.bool().any(dim=0).nonzero().max()) + 1  # drop columns that are pads in every row
    tokens, mask = tokens[:, :width], mask[:, :width]
    x = run_hooks(run.model, [run.hook], tokens, mask)[run.hook]
    with torch.inference_mode():
        feats = encode_activations(run.sae, x)
        base = run.sae.decode(feats)
    editable = edit_mask(mask).to(feats.device)
    acts = feats[..., run.ids.to(feats.device)] * editable[..., None]  # [texts, pos, n_features]
    run.activations[:, part, :width] = acts.permute(2, 0, 1).float().cpu()
    clean = HookActs(run.hook, x, tokens, mask)
    held: dict[str, Tensor] = {}

    def keep_clean(chunk: EditedChunk) -> None:  # one chunk: the texts of one pass fit the budget
        held["nll"] = next_token_nll(chunk.logits, chunk.tokens)
        held["logits"] = chunk.logits

    run_edited_rows(run.model, clean, torch.arange(len(tokens)), keep_clean, rows_per_chunk=len(tokens))
    run.clean_loss[part, : width - 1] = held["nll"].cpu()
    text_idx, feat_idx, first = _pairs(run.mode, acts, editable)
    run.bar.update(acts.shape[0] * acts.shape[2] - len(text_idx))

    def deltas(rows: Tensor) -> Tensor:
        t, j = text_idx[rows], feat_idx[rows]
        return ablation_deltas(run.sae, feats, base, editable, t, run.ids[j], run.values[j])

    def reduce(chunk: EditedChunk) -> None:
        t, j, p0 = chunk.texts, feat_idx[chunk.rows], chunk.from_position
        nll = next_token_nll(chunk.logits, chunk.tokens[:, p0:])
        end = p0 + nll.shape[1]  # the chunk's tokens stop at its last real column
        t_all = t + part.start
        run.loss_delta[j, t_all, p0:end] = (nll - held["nll"][t.to(nll.device), p0:end]).cpu()
        run.ran[j, t_all] = True
        if run.logit_sum is not None:
            w = chunk.tokens.shape[1]
            _add_logits(run, chunk.logits, held["logits"][:, p0:w], acts[:, p0:w], t, j)
        run.bar.update(len(t))

    run_edited_rows(run.model, clean, text_idx, reduce, rows_per_chunk=run.rows, deltas=deltas, first=first)


def _pairs(mode: str, acts: Tensor, editable: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The (text, feature) pairs to run and the first position each one edits, sorted by it.

    Under zero-ablation only the pairs where the feature fires, from where it first fires;
    mean-ablation moves every edited position of every pair."""
    fired = (acts != 0).cpu()  # [texts, pos, n_features]
    if mode == "mean":
        fired = editable.cpu()[..., None].expand_as(fired)
    text_idx, feat_idx = fired.any(dim=1).nonzero(as_tuple=True)
    first = fired[text_idx, :, feat_idx].to(torch.int8).argmax(dim=1)
    order = torch.argsort(first, stable=True)
    return text_idx[order], feat_idx[order], first[order]


def ablation_deltas(
    sae: SAE,
    feats: Float[Tensor, "texts pos d_sae"],
    base: Float[Tensor, "texts pos d_in"],
    editable: Bool[Tensor, "texts pos"],
    text_idx: Int[Tensor, " rows"],
    columns: Int[Tensor, " rows"],
    values: Float[Tensor, " rows"],
) -> Float[Tensor, "rows pos d_in"]:
    """The splice's delta ``decode(f') - decode(f)`` of each row: text ``text_idx[r]`` with
    feature ``columns[r]`` set to ``values[r]`` (``base = decode(feats)``, decoded once per
    text). It is 0 wherever the feature does not change and outside ``editable``, as the
    splice's own delta is; on the SAE's device."""
    device = feats.device
    t, columns = text_idx.to(device), columns.to(device)
    f_rows = feats[t]  # a copy: the features of the texts stay as they are
    target = values.to(device=device, dtype=feats.dtype)[:, None]  # [rows, 1]
    r = torch.arange(len(t), device=device)
    before = f_rows[r, :, columns]  # [rows, pos]
    f_rows[r, :, columns] = target.expand_as(before)
    changed = (before != target) & editable[t]
    with torch.inference_mode():
        delta = sae.decode(f_rows) - base[t]
    keep = changed.reshape(*changed.shape, *([1] * (delta.ndim - 2)))
    return torch.where(keep, delta, torch.zeros_like(delta))


def _add_logits(run: _Run, logits: Tensor, clean_logits: Tensor, acts: Tensor, t: Tensor, j: Tensor) -> None:
    """Add each row's ablated-minus-clean logits, summed over the positions where its feature
    fired, to its feature's running sum."""
    assert run.logit_sum is not None
    fired = acts[t.to(acts.device), :, j.to(acts.device)] != 0  # [rows, pos]
    fired = fired.to(logits.device).to(logits.dtype)
    diff = logits - clean_logits[t.to(logits.device)]
    summed = torch.einsum("rp,rpv->rv", fired, diff).double().cpu()
    run.logit_sum.index_add_(0, j, summed)
    run.logit_count.index_add_(0, j, fired.sum(dim=1).double().cpu())
