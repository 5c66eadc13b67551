"""Where features fire, token by token: the top-activating contexts of a feature over a
stream of texts, which token strings carry a feature, and a text's top features."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.analysis._checks import check_feature_ids, check_top, ranked
from saelab.extract.extract import extract_per_token
from saelab.extract.per_token import PerTokenFeatures


@dataclass(frozen=True)
class TopExamples:
    """The ``top`` highest-activating tokens of each requested feature, with context windows."""

    frame: pd.DataFrame
    """Columns ``feature, rank, value, text_index`` (position of the text in the stream),
    ``position`` (index into that text's tokens as :class:`~saelab.extract.PerTokenFeatures`
    keeps them, i.e. after BOS when BOS is excluded), ``token``, ``context_tokens``,
    ``context_values`` (this feature's activation on each context token), ``left, right``
    (context tokens before / after). Only active tokens (value > 0) are listed, so a feature
    has fewer than ``top`` rows when it fires on fewer tokens. Ties keep the earliest token."""
    features: list[int]
    top: int
    window: tuple[int, int]

    def for_feature(self, feature: int) -> pd.DataFrame:
        """Rows of one requested feature, best first."""
        if int(feature) not in self.features:
            raise ValueError(f"feature {feature} was not requested; requested: {self.features}")
        return self.frame.loc[self.frame["feature"] == int(feature)].reset_index(drop=True)


class _Context(NamedTuple):
    """One example's context window, cut while its chunk was in memory."""

    tokens: list[str]
    values: list[float]
    left: int
    right: int


_Contexts = dict[tuple[int, int, int], _Context]
"""(feature slot, text index, position) -> context window."""


class _RunningTop(NamedTuple):
    values: Float[Tensor, "top n_features"]
    text: Int[Tensor, "top n_features"]
    position: Int[Tensor, "top n_features"]


def top_examples(
    model: HookedTransformer,
    sae: SAE,
    texts: Iterable[str],
    features: Sequence[int],
    *,
    top: int = 10,
    window: tuple[int, int] = (8, 4),
    batch_size: int = 16,
    progress: bool = True,
    chunk_size: int | None = None,
) -> TopExamples:
    """Stream ``texts`` (any iterable, e.g. a generator over a corpus) through
    :func:`~saelab.extract.extract_per_token`, ``chunk_size`` texts at a time (default
    ``4 x batch_size``), and keep only the running ``top`` tokens per feature plus their
    context windows: memory O(len(features) x top x window), whatever the corpus.
    ``window = (before, after)`` context tokens around each example.
    """
    ids = check_feature_ids(features, sae.cfg.d_sae)
    chunk_size = check_top(chunk_size if chunk_size is not None else 4 * batch_size, "chunk_size")
    total = len(texts) if isinstance(texts, Sequence) else None

    def chunks() -> Iterator[PerTokenFeatures]:
        iterator = iter(texts)
        with tqdm(total=total, desc="top examples", disable=not progress, leave=False, unit="text") as bar:
            while chunk := list(itertools.islice(iterator, chunk_size)):
                yield extract_per_token(model, sae, chunk, batch_size=batch_size, progress=False)
                bar.update(len(chunk))

    return _top_over(chunks(), ids, int(sae.cfg.d_sae), top, window)


def top_examples_in(
    per_token: PerTokenFeatures, features: Sequence[int], *, top: int = 10, window: tuple[int, int] = (8, 4)
) -> TopExamples:
    """:func:`top_examples` from per-token features already at hand (e.g. those of
    ``saelab.cached_per_token``): the same result, with no model pass."""
    ids = check_feature_ids(features, per_token.d_sae)
    return _top_over([per_token], ids, per_token.d_sae, top, window)


def _top_over(
    chunks: Iterable[PerTokenFeatures], ids: list[int], d_sae: int, top: int, window: tuple[int, int]
) -> TopExamples:
    """The running top ``top`` tokens of each feature over consecutive chunks of texts."""
    top = check_top(top)
    if len(window) != 2 or any(not isinstance(w, (int, np.integer)) or w < 0 for w in window):
        raise ValueError(f"window must be (before, after) with non-negative integers, got {window!r}")
    before, after = window  # any length-2 sequence, e.g. a list, becomes a tuple
    window = (before, after)
    slot_of = torch.full((d_sae,), -1, dtype=torch.long)
    slot_of[ids] = torch.arange(len(ids))
    state = _RunningTop(
        values=torch.full((top, len(ids)), -torch.inf),
        text=torch.full((top, len(ids)), -1, dtype=torch.long),
        position=torch.full((top, len(ids)), -1, dtype=torch.long),
    )
    contexts: _Contexts = {}
    offset = 0
    for per_token in chunks:
        block = _feature_block(per_token, slot_of, len(ids))
        state, new = _merge_top_k(state, block, per_token, offset)
        contexts = _update_contexts(contexts, state, new, block, per_token, offset, window)
        offset += per_token.n_texts
    if offset == 0:
        raise ValueError("texts is empty; pass at least one text")
    return TopExamples(frame=_examples_frame(state, contexts, ids), features=ids, top=top, window=window)


def _feature_block(
    per_token: PerTokenFeatures, slot_of: Int[Tensor, " d_sae"], n_slots: int
) -> Float[Tensor, "rows n_features"]:
    """Dense activations of the requested features on every kept token of a chunk."""
    n_rows = per_token.row_ptr.numel() - 1
    row_of_nz = torch.repeat_interleave(torch.arange(n_rows), per_token.row_ptr[1:] - per_token.row_ptr[:-1])
    slots = slot_of[per_token.feature_idx]
    keep = slots >= 0
    block = torch.zeros(n_rows, n_slots)
    block[row_of_nz[keep], slots[keep]] = per_token.values[keep].float()
    return block


def _row_text_position(per_token: PerTokenFeatures) -> tuple[Int[Tensor, " rows"], Int[Tensor, " rows"]]:
    starts = per_token.text_row_start
    text = torch.repeat_interleave(torch.arange(per_token.n_texts), starts[1:] - starts[:-1])
    return text, torch.arange(int(starts[-1])) - starts[text]


def _merge_top_k(
    state: _RunningTop, block: Float[Tensor, "rows n_features"], per_token: PerTokenFeatures, offset: int
) -> tuple[_RunningTop, Bool[Tensor, "top n_features"]]:
    """Merge a chunk into the running top. A stable sort with the running entries first
    makes ties go to the earliest token, so the result does not depend on the chunk size.
    Returns the new state and which of its entries came from this chunk."""
    top, n_features = state.values.shape
    text, position = _row_text_position(per_token)
    values = torch.cat([state.values, block])
    order = torch.sort(values, dim=0, descending=True, stable=True).indices[:top]
    texts = torch.cat([state.text, (text + offset)[:, None].expand(-1, n_features)])
    positions = torch.cat([state.position, position[:, None].expand(-1, n_features)])
    merged = _RunningTop(values.gather(0, order), texts.gather(0, order), positions.gather(0, order))
    return merged, (order >= top) & (merged.values > 0)


def _update_contexts(
    contexts: _Contexts,
    state: _RunningTop,
    new: Bool[Tensor, "top n_features"],
    block: Float[Tensor, "rows n_features"],
    per_token: PerTokenFeatures,
    offset: int,
    window: tuple[int, int],
) -> _Contexts:
    """Keep the context windows of entries still in the top; cut those of new entries
    while their chunk is at hand (the stream is not kept)."""
    kept = {}
    for rank, slot in (state.values > 0).nonzero().tolist():
        key = (slot, int(state.text[rank, slot]), int(state.position[rank, slot]))
        if not new[rank, slot]:
            kept[key] = contexts[key]
            continue
        local, pos = key[1] - offset, key[2]
        length = len(per_token.tokens[local])
        left, right = min(window[0], pos), min(window[1], length - 1 - pos)
        start = int(per_token.text_row_start[local])
        values = block[start + pos - left : start + pos + right + 1, slot].tolist()
        kept[key] = _Context(per_token.tokens[local][pos - left : pos + right + 1], values, left, right)
    return kept


def _examples_frame(
    state: _RunningTop, contexts: _Contexts, ids: list[int]
) -> pd.DataFrame:
    rows = []
    for slot, feature in enumerate(ids):
        for rank in range(state.values.shape[0]):
            value = float(state.values[rank, slot])
            if value <= 0:
                break
            text, pos = int(state.text[rank, slot]), int(state.position[rank, slot])
            ctx = contexts[(slot, text, pos)]
            token = ctx.tokens[ctx.left]
            rows.append((feature, rank + 1, value, text, pos, token, ctx.tokens, ctx.values, ctx.left, ctx.right))
    return pd.DataFrame(rows, columns=_EXAMPLE_COLUMNS)


_EXAMPLE_COLUMNS = [
    "feature", "rank", "value", "text_index", "position", "token", "context_tokens", "context_values", "left", "right",
]  # fmt: skip


def token_profile(per_token: PerTokenFeatures, feature: int, top: int = 10) -> pd.DataFrame:
    """Which token strings carry a feature's activation: do "specialists" detect a topic, or
    the syntax its texts happen to use (``+``, ``=``, ``):``)?

    Over every kept token of ``per_token``, grouped by token string: ``n_active`` (occurrences
    where the feature fires), ``n_total`` (occurrences), ``frac_active`` (their ratio),
    ``mean_when_active``, ``total`` (summed activation) and ``share`` (``total`` over the
    feature's total activation on all tokens). Ranked by ``total``; only tokens where it fires.
    """
    top = check_top(top)
    per_token.check_feature(feature)
    flat = [tok for toks in per_token.tokens for tok in toks]
    if not flat:
        raise ValueError("per_token holds no tokens")
    codes, names = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    values = torch.cat(per_token.feature(feature)).double().numpy()
    active = values > 0
    n_types = len(names)
    n_active = np.bincount(codes, weights=active, minlength=n_types)
    total = np.bincount(codes, weights=np.where(active, values, 0.0), minlength=n_types)
    grand = total.sum()
    frame = pd.DataFrame(
        {
            "feature": feature,
            "token": [str(t) for t in names],
            "n_active": n_active.astype(np.int64),
            "n_total": np.bincount(codes, minlength=n_types),
            "mean_when_active": np.divide(total, n_active, out=np.zeros(n_types), where=n_active > 0),
            "total": total,
            "share": total / grand if grand > 0 else np.zeros(n_types),
        }
    )
    frame["frac_active"] = frame.n_active / frame.n_total
    frame = frame.loc[frame["n_active"] > 0]
    out = ranked(frame, ["total"], top)
    columns = ["rank", "feature", "token", "n_active", "n_total", "frac_active", "mean_when_active", "total", "share"]
    return out.loc[:, columns]


def rank_text_features(per_token: PerTokenFeatures, top: int = 10) -> pd.DataFrame:
    """Features of text 0 of ``per_token`` ranked by their largest activation on a token.

    Columns ``rank, feature, max_activation, mean_activation`` (over all its tokens) and
    ``n_tokens_active``; only features that fire. Vectorised over the non-zeros.
    """
    top = check_top(top)
    start, end = int(per_token.text_row_start[0]), int(per_token.text_row_start[1])
    lo, hi = int(per_token.row_ptr[start]), int(per_token.row_ptr[end])
    ids, vals = per_token.feature_idx[lo:hi], per_token.values[lo:hi].double()
    peak = torch.zeros(per_token.d_sae, dtype=torch.float64).scatter_reduce_(0, ids, vals, reduce="amax")
    total = torch.zeros(per_token.d_sae, dtype=torch.float64).index_add_(0, ids, vals)
    count = torch.bincount(ids[vals > 0], minlength=per_token.d_sae)
    live = torch.nonzero(count > 0).squeeze(1)
    order = live[torch.argsort(-peak[live], stable=True)][:top]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "feature": order.numpy(),
            "max_activation": peak[order].numpy(),
            "mean_activation": (total[order] / max(1, end - start)).numpy(),
            "n_tokens_active": count[order].numpy(),
        }
    )
