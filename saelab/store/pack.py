"""Packing documents into fixed-length rows of token ids, and which positions get stored.

Documents are tokenized (the one policy, :func:`saelab.extract.tokens.encode_texts`) and
packed end to end, each followed by a separator (the tokenizer's EOS), into rows of
``seq_len`` tokens that start with BOS, as SAELens does. Packing wastes no compute on
padding, which matters with thousands of fortune-sized documents; a context may span
documents, as in pretraining.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from saelab.corpus.config import Document
from saelab.extract.tokens import encode_texts
from saelab.store.config import StoreConfig


def tokenize_corpus(
    docs: Iterable[str],
    tokenizer: Any,
    seq_len: int,
    bos_id: int | None,
    *,
    sep_id: int | None = None,
    n_seq: int | None = None,
) -> Int[Tensor, "n_seq seq_len"]:
    """Pack documents into rows of ``seq_len`` tokens: ``[BOS] + tokens``, each document
    followed by ``sep_id`` (None: the tokenizer's EOS; pass -1 for no separator).

    Takes ``n_seq`` rows (None: as many as the documents fill; a partial last row is dropped).
    """
    sep = resolve_sep(tokenizer, sep_id)
    tagged = (Document(text, "docs", str(i)) for i, text in enumerate(docs))
    rows = []
    for row in pack_rows(tagged, tokenizer, seq_len, bos_id, sep, Counter()):
        rows.append(row)
        if n_seq is not None and len(rows) >= n_seq:
            break
    if n_seq is not None and len(rows) < n_seq:
        raise ValueError(f"The documents fill only {len(rows)} rows of {seq_len} tokens; {n_seq} were asked for.")
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), seq_len)


def resolve_sep(tokenizer: Any, sep_id: int | None) -> int | None:
    """The document separator: the tokenizer's EOS for None, no separator for a negative id."""
    if sep_id is None:
        return tokenizer.eos_token_id
    return None if sep_id < 0 else sep_id


def pack_rows(
    docs: Iterable[Document],
    tokenizer: Any,
    seq_len: int,
    bos_id: int | None,
    sep_id: int | None,
    used: Counter[str],
    batch_docs: int = 256,
) -> Iterator[list[int]]:
    """Rows of packed token ids; ``used`` counts the tokens each source put into them."""
    body = seq_len - (1 if bos_id is not None else 0)
    prefix = [bos_id] if bos_id is not None else []
    buffer: list[int] = []
    owners: deque[list[Any]] = deque()  # [source, n_tokens] runs aligned with the buffer
    for batch in _batched(docs, batch_docs):
        for doc, ids in zip(batch, encode_texts(tokenizer, [d.text for d in batch]), strict=True):
            piece = list(ids) + ([sep_id] if sep_id is not None else [])
            buffer.extend(piece)
            owners.append([doc.source, len(piece)])
            while len(buffer) >= body:
                _charge(owners, body, used)
                yield prefix + buffer[:body]
                del buffer[:body]


def _charge(owners: deque[list[Any]], n: int, used: Counter[str]) -> None:
    while n > 0:
        run = owners[0]
        take = min(n, run[1])
        used[run[0]] += take
        run[1] -= take
        n -= take
        if run[1] == 0:
            owners.popleft()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def keep_mask(
    tokens: Int[Tensor, "n_seq seq_len"], exclude_bos: bool, excluded_ids: Sequence[int]
) -> Bool[Tensor, "n_seq seq_len"]:
    """Positions whose activations are stored (row-major order gives the store's row order)."""
    mask = torch.ones(tokens.shape, dtype=torch.bool)
    if exclude_bos:
        mask[:, 0] = False
    if excluded_ids:
        # Position 0 is governed by exclude_bos alone.
        mask[:, 1:] &= ~torch.isin(tokens[:, 1:], torch.tensor(list(excluded_ids), dtype=tokens.dtype))
    return mask


def take_sequences(rows: Iterator[list[int]], cfg: StoreConfig, excluded: list[int]) -> Int[Tensor, "n_seq seq_len"]:
    """Just enough packed rows to hold ``n_tokens`` stored positions."""
    taken, stored = [], 0
    excluded_set = set(excluded)
    for row in rows:
        taken.append(row)
        stored += int(not cfg.exclude_bos) + sum(1 for t in row[1:] if t not in excluded_set)
        if stored >= cfg.n_tokens:
            return torch.tensor(taken, dtype=torch.long)
    raise ValueError(
        f"The corpus filled only {len(taken)} sequences ({stored} storable tokens) but n_tokens={cfg.n_tokens}. "
        "Give more text (raise CorpusConfig.target_tokens) or lower StoreConfig.n_tokens."
    )
