"""Reading a complete activation store: metadata, tokens, whole splits, shuffled batches.

The last ``held_out_fraction`` of sequences is reserved for evaluation and never served by
``iter_batches(split="train")``. The split decides serving, not content, so it is not part
of the store's key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from torch import Tensor

from saelab._util.device import default_device
from saelab.store.batches import BatchIterator, ShardRange
from saelab.store.config import DEFAULT_MEMORY_BUDGET, SPLITS, STORE_FORMAT, STORE_VERSION, Split, StoreConfig
from saelab.store.manifest import read_tokens
from saelab.store.pack import keep_mask

_READ_CHUNK_ROWS = 8192  # rows copied per read, so loading never holds a second full shard


class RowPositions(NamedTuple):
    """Where the store's rows come from: row ``r`` is position ``pos[r]`` of sequence ``seq[r]``."""

    seq: Int[Tensor, " rows"]
    pos: Int[Tensor, " rows"]


class ActivationStore:
    """A complete activation store on disk. Open with :meth:`open` or get one from :func:`build_store`."""

    def __init__(self, path: Path, manifest: dict[str, Any], held_out_fraction: float | None = None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.config = StoreConfig.from_dict(manifest["config"])
        fraction = self.config.held_out_fraction if held_out_fraction is None else held_out_fraction
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in [0, 1), got {fraction}")
        self.held_out_fraction = float(fraction)
        n_seq = manifest["n_seq"]
        self.n_held_out_seq = min(n_seq - 1, math.ceil(n_seq * fraction)) if fraction > 0 else 0
        self._tokens: Tensor | None = None
        self._rows_per_seq: Tensor | None = None

    @classmethod
    def open(cls, path: str | Path, *, held_out_fraction: float | None = None) -> ActivationStore:
        """Open a built store; ``held_out_fraction`` overrides the one it was built with."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{path} is not an activation store (no manifest.json).")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise ValueError(
                f"{path} holds format {manifest.get('format')!r} version {manifest.get('version')!r}; this saelab "
                f"reads {STORE_FORMAT!r} version {STORE_VERSION}. Rebuild it with build_store."
            )
        if not manifest.get("complete"):
            raise ValueError(f"The activation store {path} is incomplete; run build_store again to resume it.")
        return cls(path, manifest, held_out_fraction)

    def __repr__(self) -> str:
        return (
            f"ActivationStore({self.path.name}: {self.n_rows('all')} rows x {list(self.hooks)}, "
            f"seq_len={self.seq_len}, {self.dtype}, held-out {self.n_held_out_seq}/{self.n_seq} sequences)"
        )

    # -- metadata ---------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.config.hooks

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def n_seq(self) -> int:
        return self.manifest["n_seq"]

    @property
    def n_train_seq(self) -> int:
        return self.n_seq - self.n_held_out_seq

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.manifest["dtype"])

    @property
    def tokens_by_source(self) -> dict[str, int]:
        """Corpus tokens (separators included) each source contributed to the sequences."""
        return dict(self.manifest["corpus"]["tokens_by_source"])

    def d_in(self, hook: str) -> int:
        return self.manifest["d_in"][self._check_hook(hook)]

    def n_rows(self, split: Split = "train") -> int:
        return sum(r.hi - r.lo for r in self.ranges(split))

    # -- tokens -----------------------------------------------------------------------

    def tokens(self, split: Split = "all") -> Int[Tensor, "n_seq seq_len"]:
        """Token ids of the sequences (BOS included), e.g. for CE-loss evaluation on held-out text."""
        lo, hi = self._seq_range(split)
        return self._all_tokens()[lo:hi].clone()

    def keep_mask(self) -> Bool[Tensor, "n_seq seq_len"]:
        """Which (sequence, position) pairs have stored activations."""
        return keep_mask(self._all_tokens(), self.config.exclude_bos, self.manifest["excluded_token_ids"])

    def row_positions(self, split: Split = "all") -> RowPositions:
        """(sequence, position) of every row of ``split``, in storage order."""
        lo, hi = self._seq_range(split)
        seq, pos = self.keep_mask()[lo:hi].nonzero(as_tuple=True)
        return RowPositions(seq + lo, pos)

    # -- activations ------------------------------------------------------------------

    def load(
        self, hook: str, split: Split = "held_out", *, device: str | torch.device | None = None
    ) -> Float[Tensor, "rows d_in"]:
        """Every row of ``split`` in storage order, as fp32 on ``device`` (None: CUDA if
        present), e.g. for evaluation. It holds the whole split in memory."""
        ranges = self.ranges(split)
        buffer = torch.empty((sum(r.hi - r.lo for r in ranges), self.d_in(hook)), dtype=self.dtype)
        self.fill(buffer, hook, ranges)
        return buffer.to(device if device is not None else default_device()).float()

    def iter_batches(
        self,
        hook: str,
        batch_size: int,
        *,
        split: Split = "train",
        shuffle: bool = True,
        seed: int = 0,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        epochs: int | None = 1,
        start_batch: int = 0,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> BatchIterator:
        """Batches of ``[batch_size, d_in]`` fp32 activations on ``device`` (None: CUDA if present).

        Shuffling within a memory budget: each epoch visits the shards in a seeded random
        order, loads consecutive shards into a buffer of at most ``memory_budget_bytes``
        (counted in the store dtype), permutes the buffer's rows and serves them. Every row of
        the split is served exactly once per epoch; the last batch of an epoch is smaller
        unless ``drop_last``. A batch therefore mixes rows from the shards in one buffer
        (plus fewer than ``batch_size`` rows left over from the previous buffer). Shards hold
        whole sequences, so a budget of B shards draws each batch from about
        ``B * seqs_per_shard`` sequences; with a budget of the whole split it is a uniform
        shuffle. The order is a pure function of ``seed``, the epoch and the buffer index, so
        ``start_batch=k`` (counted across epochs) yields exactly what a fresh iterator yields
        after its first ``k`` batches, loading only what those need.

        ``rank`` and ``world_size`` serve one rank's share of every batch (``batch_size /
        world_size`` rows) for data-parallel training; the shares of all ranks make up the
        batches of ``world_size=1``.
        """
        return BatchIterator(
            self,
            self._check_hook(hook),
            batch_size,
            split=split,
            shuffle=shuffle,
            seed=seed,
            memory_budget_bytes=memory_budget_bytes,
            epochs=epochs,
            start_batch=start_batch,
            drop_last=drop_last,
            device=torch.device(device) if device is not None else default_device(),
            rank=rank,
            world_size=world_size,
        )

    def batches_per_epoch(self, batch_size: int, split: Split = "train", drop_last: bool = False) -> int:
        rows = self.n_rows(split)
        return rows // batch_size if drop_last else math.ceil(rows / batch_size)

    # -- internals --------------------------------------------------------------------

    def _check_hook(self, hook: str) -> str:
        if hook not in self.hooks:
            raise ValueError(f"Hook {hook!r} is not in this store; valid: {list(self.hooks)}")
        return hook

    def _all_tokens(self) -> Tensor:
        if self._tokens is None:
            tokens = read_tokens(self.path, self.manifest)
            if tokens is None:
                file = self.path / self.manifest["tokens_file"]
                raise ValueError(f"{file} is missing or does not match the manifest; rebuild the store.")
            self._tokens = tokens
        return self._tokens

    def _seq_range(self, split: Split) -> tuple[int, int]:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid: {list(SPLITS)}")
        if split == "train":
            return 0, self.n_train_seq
        if split == "held_out":
            return self.n_train_seq, self.n_seq
        return 0, self.n_seq

    def ranges(self, split: Split) -> list[ShardRange]:
        """Per shard, the rows of ``split`` (a prefix, a suffix or all of the shard)."""
        lo_seq, hi_seq = self._seq_range(split)
        if self._rows_per_seq is None:
            self._rows_per_seq = self.keep_mask().sum(dim=1)
        cum = torch.cat([torch.zeros(1, dtype=torch.long), self._rows_per_seq.cumsum(0)]).tolist()
        out = []
        for shard in self.manifest["shards"]:
            a, b = shard["seq_start"], shard["seq_end"]
            s, e = max(a, lo_seq), min(b, hi_seq)
            if s < e:
                out.append(ShardRange(shard["index"], cum[s] - cum[a], cum[e] - cum[a]))
        return out

    def _shard_file(self, hook: str, shard: int) -> Path:
        return self.path / self.manifest["shards"][shard]["files"][hook]

    def fill(self, buffer: Tensor, hook: str, ranges: Sequence[ShardRange]) -> None:
        """Copy the rows of ``ranges`` into ``buffer`` in order, a chunk at a time."""
        offset = 0
        for rng in ranges:
            with safe_open(str(self._shard_file(hook, rng.shard)), framework="pt") as handle:
                rows = handle.get_slice("acts")
                for start in range(rng.lo, rng.hi, _READ_CHUNK_ROWS):
                    stop = min(start + _READ_CHUNK_ROWS, rng.hi)
                    buffer[offset : offset + stop - start] = rows[start:stop]
                    offset += stop - start
