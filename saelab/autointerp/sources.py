"""Where the examples pass reads activations from, one bounded chunk of sequences at a time.

Two sources, one interface (:class:`ActivationSource`):
- :class:`StoreSource`: a split of an activation store (by default its held-out part). The
  activations are already on disk, so the pass runs no model at all.
- :class:`TextSource`: any list of texts, run through the model once, as deep as the hook
  (or read back from the residual cache, when an extraction of the same texts kept them).

A chunk holds ``[batch, pos]`` token ids, the ``[batch, pos, d_model]`` activations and a
``valid`` mask of the positions that were encoded (never BOS, pads, or what the store left
out). Chunks come in a fixed order, so a resumed pass skips the first ``start`` of them
without reading or running anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.keys import model_identity, stable_hash, texts_digest
from saelab.extract.batches import pad_rows
from saelab.extract.cache import feature_cache_dir
from saelab.extract.hooks import hook_activations
from saelab.extract.residuals import load_residuals
from saelab.extract.tokens import tokenize
from saelab.store.config import Split
from saelab.store.reader import ActivationStore


class Chunk(NamedTuple):
    """A few whole sequences: their tokens, activations at the hook, and which positions count."""

    seq: Int[Tensor, " batch"]
    """Index of each row's sequence in the source."""
    tokens: Int[Tensor, "batch pos"]
    acts: Float[Tensor, "batch pos d_model"]
    valid: Bool[Tensor, "batch pos"]


class ActivationSource(Protocol):
    key: str
    """Identifies the source's content (model, hook, texts or store, split) for the cache."""
    n_chunks: int
    n_tokens: int
    """Valid positions over the whole source."""

    def chunk(self, index: int) -> Chunk:
        """Chunk ``index`` of ``n_chunks`` (the same content every time)."""
        ...

    def token_ids(self, seq: int) -> list[int]:
        """All token ids of sequence ``seq`` (BOS included), for building contexts."""
        ...


@dataclass
class StoreSource:
    """``split`` of an activation store at ``hook``, ``seqs_per_chunk`` sequences at a time."""

    store: ActivationStore
    hook: str
    split: Split = "held_out"
    seqs_per_chunk: int = 64
    max_sequences: int | None = None
    """Read only the first this many sequences of the split (None: all)."""

    def __post_init__(self) -> None:
        if self.hook not in self.store.hooks:
            raise ValueError(
                f"Hook {self.hook!r} is not in the store {self.store.path}; valid: {list(self.store.hooks)}"
            )
        if self.seqs_per_chunk < 1:
            raise ValueError(f"seqs_per_chunk must be positive, got {self.seqs_per_chunk}")
        lo, hi = self.store._seq_range(self.split)  # noqa: SLF001 (the store's own split arithmetic)
        if self.max_sequences is not None:
            hi = min(hi, lo + self.max_sequences)
        if hi <= lo:
            raise ValueError(f"The {self.split!r} split of {self.store.path} holds no sequences.")
        self.lo, self.hi = lo, hi
        self._mask = self.store.keep_mask()
        self._row_start = torch.cat([torch.zeros(1, dtype=torch.long), self._mask.sum(dim=1).cumsum(0)])
        self.key = stable_hash(["store", self.store.key, self.hook, self.split, lo, hi])
        self.n_chunks = math.ceil((hi - lo) / self.seqs_per_chunk)
        self.n_tokens = int(self._mask[lo:hi].sum())

    def token_ids(self, seq: int) -> list[int]:
        return self.store._all_tokens()[seq].tolist()  # noqa: SLF001

    def chunk(self, index: int) -> Chunk:
        _check_index(index, self.n_chunks)
        a = self.lo + index * self.seqs_per_chunk
        return self._read(a, min(self.hi, a + self.seqs_per_chunk))

    def _read(self, a: int, b: int) -> Chunk:
        """Sequences ``[a, b)``: their stored rows scattered back to (sequence, position)."""
        tokens = self.store._all_tokens()[a:b]  # noqa: SLF001
        valid = self._mask[a:b]
        rows = torch.empty((int(valid.sum()), self.store.d_in(self.hook)), dtype=self.store.dtype)
        offset = 0
        for shard in self.store.manifest["shards"]:
            s, e = max(a, shard["seq_start"]), min(b, shard["seq_end"])
            if s >= e:
                continue
            base = int(self._row_start[shard["seq_start"]])
            lo, hi = int(self._row_start[s]) - base, int(self._row_start[e]) - base
            path = self.store.path / shard["files"][self.hook]
            with safe_open(str(path), framework="pt") as handle:
                rows[offset : offset + hi - lo] = handle.get_slice("acts")[lo:hi]
            offset += hi - lo
        acts = torch.zeros((*tokens.shape, rows.shape[1]), dtype=torch.float32)
        acts[valid] = rows.float()
        return Chunk(torch.arange(a, b), tokens, acts, valid)


@dataclass
class TextSource:
    """``texts`` run through ``model`` up to ``hook``, ``batch_size`` texts at a time.

    Each text is one sequence, BOS prepended, whole up to the model's context. A text longer
    than ``max_length`` tokens (or the context) is cut, with a
    :class:`~saelab.extract.tokens.TextTooLongWarning` that counts the texts and tokens dropped.
    Batches are padded on the right and the padding is masked, so a text's activations do not
    depend on its batch.
    """

    model: HookedTransformer
    texts: Sequence[str]
    hook: str
    batch_size: int = 16
    max_length: int | None = None
    """Cut texts at this many tokens, BOS included (None: the model's context)."""
    reuse_activations: bool = True
    """Read the activations from the residual cache when an extraction of these texts left
    them there (:mod:`saelab.extract.residuals`), instead of running the model again."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.max_length is not None and self.max_length < 2):
            raise ValueError(f"batch_size must be >= 1 and max_length >= 2, got {self.batch_size}, {self.max_length}")
        self._tokenized = tokenize(self.model, list(self.texts), max_length=self.max_length)
        self._cached = (
            load_residuals(self.model, self.hook, self.texts, self.max_length, feature_cache_dir())
            if self.reuse_activations
            else None
        )
        self.key = stable_hash(["texts", model_identity(self.model), self.hook, texts_digest(self.texts),
                                self.max_length])  # fmt: skip
        self.n_chunks = math.ceil(len(self.texts) / self.batch_size)
        skip = 1 if self._tokenized.has_bos else 0
        self.n_tokens = sum(max(0, len(row) - skip) for row in self._tokenized.ids)

    def token_ids(self, seq: int) -> list[int]:
        return list(self._tokenized.ids[seq])

    def chunk(self, index: int) -> Chunk:
        _check_index(index, self.n_chunks)
        take = list(range(index * self.batch_size, min(len(self.texts), (index + 1) * self.batch_size)))
        width = max(len(self._tokenized.ids[i]) for i in take)
        batch = pad_rows(self._tokenized, take, width, "right", True, pad_id=0)  # pads are masked: any id works
        if self._cached is not None:
            acts = self._cached.padded(batch.index, batch.attention_mask).to(self.model.cfg.device or "cpu")
        else:
            acts = hook_activations(self.model, self.hook, batch.tokens, batch.attention_mask)
        return Chunk(batch.index, batch.tokens, acts.float(), batch.pool_mask.to(acts.device))


def _check_index(index: int, n_chunks: int) -> None:
    if not 0 <= index < n_chunks:
        raise IndexError(f"chunk {index} is out of range; the source has {n_chunks} chunks")
