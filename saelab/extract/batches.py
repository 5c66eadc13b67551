"""Padded batches with exact masks: which positions are real, and which count for pooling.

The masks come from how each row was built, never from ``tokens != pad_token_id``:
SmolLM2's pad id equals its EOS id, and GPT-2 has no pad token. Batches are length-sorted
(similar lengths share a batch, so little compute goes to pads) and bounded both by a row
count and by a memory budget on the dense ``[batch, pos, d_sae]`` feature block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from saelab.extract.tokens import Tokenized

PaddingSide = Literal["left", "right"]

DEFAULT_MAX_BATCH_BYTES = 512 * 2**20
"""Upper bound on the dense per-batch feature block [batch, pos, d_sae] (fp32 bytes). Keeps
GPT-2's 24,576-feature SAEs within memory on long texts."""


@dataclass(frozen=True)
class Batch:
    """One padded batch and which texts it holds."""

    index: Int[Tensor, " batch"]
    """Positions of these rows in the caller's text list."""
    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    pool_mask: Bool[Tensor, "batch pos"]
    """Real tokens that count for pooling (attention mask, minus BOS when excluded)."""


def iter_batches(
    tokenized: Tokenized,
    batch_size: int,
    padding_side: PaddingSide,
    exclude_bos: bool,
    d_sae: int,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    pad_id: int = 0,
) -> Iterator[Batch]:
    """Length-sorted batches. The pad id is irrelevant to the result (pads are masked in
    attention and pooling)."""
    lengths = torch.tensor([len(r) for r in tokenized.ids])
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        # Bound the dense [batch, pos, d_sae] fp32 block, but always make progress.
        by_memory = max(1, max_batch_bytes // max(1, longest * d_sae * 4))
        take = order[start : start + min(batch_size, by_memory)]
        start += len(take)
        yield pad_rows(tokenized, take, longest, padding_side, exclude_bos, pad_id)


def pad_rows(
    tokenized: Tokenized, take: Sequence[int], width: int, side: PaddingSide, exclude_bos: bool, pad_id: int
) -> Batch:
    """Texts ``take`` padded to ``width`` on ``side``, with their attention and pooling masks."""
    tokens = torch.full((len(take), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(take), width), dtype=torch.long)
    pool_mask = torch.zeros((len(take), width), dtype=torch.bool)
    for row, i in enumerate(take):
        ids = tokenized.ids[i]
        offset = width - len(ids) if side == "left" else 0
        tokens[row, offset : offset + len(ids)] = torch.tensor(ids)
        attn[row, offset : offset + len(ids)] = 1
        first = offset + (1 if exclude_bos and tokenized.has_bos else 0)
        pool_mask[row, first : offset + len(ids)] = True
    return Batch(index=torch.tensor(list(take)), tokens=tokens, attention_mask=attn, pool_mask=pool_mask)
