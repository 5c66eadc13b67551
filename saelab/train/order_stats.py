"""Exact order statistics of values streamed in chunks, by radix selection on their bits.

``select_ranked`` finds the r-th largest of many values (over all columns, or per column)
without holding them: each pass over the chunks histograms the next bits of the keys that
share the prefix found so far. Keys are float bit patterns reordered so that integer order is
float order (:func:`float_keys`), so the answer is exact, ties and signed zeros included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor

HIST_BUDGET = 1 << 22
"""Counts in one radix pass's histogram."""


def select_ranked(
    scored: Callable[[], Iterable[tuple[Tensor, Tensor]]], ranks: Tensor, *, per_column: bool
) -> Float[Tensor, " q"]:
    """Query q's ``ranks[q]``-th largest counted score (1 = the largest, within the counted
    entries), over every column or over column q only (``per_column``), exactly: each pass over
    ``scored()`` (chunks of float32 or float64 scores, and which count) histograms the next bits
    of the keys that share the prefix found so far. Memory is the histogram: 2^16 counts per
    query, or 2^22 in all per column (4 passes of 9 bits for float32 at 4608 latents)."""
    n_q = ranks.numel()
    bits = 16 if not per_column else max(1, min(16, (HIST_BUDGET // n_q).bit_length() - 1))
    prefix, rank, known, width = torch.zeros_like(ranks), ranks.clone().long(), 0, 0
    with torch.no_grad():
        while width == 0 or known < width:  # the scores' width in bits, read from the first chunk
            hist = None
            for values, counted in scored():
                width = values.element_size() * 8
                b = min(bits, width - known)
                hist = torch.zeros(n_q, 1 << b, dtype=torch.long, device=ranks.device) if hist is None else hist
                rows_i, cols = counted.nonzero(as_tuple=True)
                keys = float_keys(values[rows_i, cols])
                if per_column:
                    if known:
                        hit = (keys >> (width - known)) == prefix[cols]
                        keys, cols = keys[hit], cols[hit]
                    hist.view(-1).index_add_(
                        0, cols * (1 << b) + key_digit(keys, width, known, b), torch.ones_like(cols)
                    )
                    continue
                for p in prefix.unique():  # queries that share a prefix share its counts
                    own = keys[(keys >> (width - known)) == p] if known else keys
                    hist[prefix == p] += torch.bincount(key_digit(own, width, known, b), minlength=1 << b)
            assert hist is not None, "scored() yielded no chunks"
            b = hist.shape[1].bit_length() - 1
            from_top = hist.flip(1).cumsum(1)  # entries with digit >= d, for d from the top down
            skipped = (from_top < rank[:, None]).sum(1).clamp(max=(1 << b) - 1)
            above = from_top.gather(1, (skipped - 1).clamp(min=0)[:, None]).squeeze(1)
            rank = rank - torch.where(skipped > 0, above, 0)
            digit = (1 << b) - 1 - skipped
            prefix = (prefix << b) | digit if known else digit - (1 << (b - 1))
            known += b
    return keys_to_floats(prefix, width)


def key_digit(keys: Tensor, width: int, known: int, b: int) -> Int[Tensor, " n"]:
    """Bits ``known:known + b`` of each key, in [0, 2^b) (the signed first digit offset)."""
    return ((keys >> (width - known - b)) + (0 if known else 1 << (b - 1))) & ((1 << b) - 1)


def float_keys(values: Tensor) -> Int[Tensor, " n"]:
    """float32 or float64 -> int64 with the same order: the bit pattern, with negatives'
    magnitude bits flipped (a signed key of the float's width)."""
    signed = torch.int32 if values.dtype == torch.float32 else torch.int64
    bits = values.contiguous().view(signed)
    return torch.where(bits < 0, bits ^ torch.iinfo(signed).max, bits).long()


def keys_to_floats(keys: Tensor, width: int) -> Float[Tensor, " n"]:
    """The inverse of :func:`_keys` for keys of ``width`` bits."""
    signed, floating = (torch.int32, torch.float32) if width == 32 else (torch.int64, torch.float64)
    bits = keys.to(signed)
    return torch.where(bits < 0, bits ^ torch.iinfo(signed).max, bits).view(floating)
