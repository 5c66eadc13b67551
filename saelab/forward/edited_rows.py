"""The one engine under every ablation: edited copies of token rows, resumed from a hook in
chunks that bound the logits' memory, each chunk's logits reduced by the caller.

An edited row copies token row ``texts[r]`` and adds ``delta_r`` to its clean activation at the
hook. The layers below the hook run once per token row (the caller's pass to the hook); each
edited row costs only the layers after it (see :mod:`saelab.forward.resume`). A zero delta gives
back the clean row exactly: ``x + 0`` is ``x``.

Memory. Logits are ``[rows, pos, d_vocab]`` fp32, by far the largest tensors (about 200 KB per
position for SmolLM2), so chunks hold at most :func:`rows_per_pass` rows, and each chunk's
logits are dropped once its reduction returns. Rows may tell where their delta starts
(``first``): a chunk unembeds only from its rows' earliest edited position on, since an edit
cannot move the logits before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.forward.resume import resume

DEFAULT_MAX_LOGIT_BYTES = 512 * 2**20
"""Upper bound on the vocabulary-sized fp32 blocks one chunk of rows holds at once."""


class HookActs(NamedTuple):
    """Clean activations at a hook and the token rows they came from."""

    hook: str
    acts: Float[Tensor, "texts pos *d"]
    tokens: Int[Tensor, "texts pos"]
    attention_mask: Int[Tensor, "texts pos"] | None
    """1 = real token; None when no row is padded."""


class EditedChunk(NamedTuple):
    """What a reduction gets: one chunk of edited rows and their logits."""

    rows: Int[Tensor, " chunk"]
    """Indices of these rows among all edited rows."""
    texts: Int[Tensor, " chunk"]
    """The token row each one copies."""
    tokens: Int[Tensor, "chunk width"]
    """Their tokens, cut after the last column that is real in any of them."""
    from_position: int
    logits: Float[Tensor, "chunk width_from vocab"]
    """Logits of positions ``from_position`` to ``width - 1``."""


Deltas = Callable[[Int[Tensor, " chunk"]], Float[Tensor, "chunk pos *d"]]
"""``deltas(rows)``: the additive edit of each of these edited rows at the hook, full width."""
Reduce = Callable[[EditedChunk], None]
"""Reads one chunk's logits and keeps what it needs (it is called once per chunk, in order)."""


def rows_per_pass(max_logit_bytes: int, width: int, d_vocab: int, blocks: int) -> int:
    """How many rows of ``width`` positions fit ``blocks`` fp32 logit blocks in ``max_logit_bytes``
    (at least one)."""
    return max(1, max_logit_bytes // (blocks * width * d_vocab * 4))


def run_edited_rows(
    model: HookedTransformer,
    clean: HookActs,
    texts: Int[Tensor, " rows"],
    reduce: Reduce,
    *,
    rows_per_chunk: int,
    deltas: Deltas | None = None,
    first: Int[Tensor, " rows"] | None = None,
) -> None:
    """Run ``clean.acts[texts[r]] + deltas(r)`` from ``clean.hook`` on for every edited row r,
    ``rows_per_chunk`` rows at a time in the given order, and hand each chunk to ``reduce``.

    ``deltas`` None runs the clean rows. ``first[r]``: the first position row r's delta touches
    (sort rows by it so chunks start late); each chunk's logits begin at its rows' minimum.
    """
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk must be positive, got {rows_per_chunk}")
    texts = texts.long().cpu()
    device = clean.acts.device
    for start in range(0, len(texts), rows_per_chunk):
        rows = torch.arange(start, min(start + rows_per_chunk, len(texts)))
        t = texts[rows]
        x = clean.acts[t.to(device)]
        if deltas is not None:
            x = x + deltas(rows).to(x)
        mask = clean.attention_mask[t] if clean.attention_mask is not None else None
        width = clean.tokens.shape[1] if mask is None else int(mask.bool().any(dim=0).nonzero().max()) + 1
        p0 = int(first[rows].min()) if first is not None else 0
        tokens = clean.tokens[t.to(clean.tokens.device), :width]
        logits = resume(
            model,
            clean.hook,
            x[:, :width],
            tokens,
            attention_mask=mask[:, :width] if mask is not None else None,
            from_position=p0,
        )
        reduce(EditedChunk(rows=rows, texts=t, tokens=tokens, from_position=p0, logits=logits))
        del logits
