"""Serving a store's rows as shuffled batches within a memory budget, resumable exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from saelab.store.config import Split

if TYPE_CHECKING:
    from saelab.store.reader import ActivationStore


class ShardRange(NamedTuple):
    """Rows ``lo:hi`` of one shard file."""

    shard: int
    lo: int
    hi: int


class BatchIterator(Iterator[Tensor]):
    """The iterator :meth:`ActivationStore.iter_batches` returns.

    ``position`` is the number of batches served so far, counted from the start of epoch 0
    (``start_batch`` included); save it with the seed to resume exactly.

    With ``world_size > 1`` it serves rank ``rank``'s share of each batch: rows
    ``[rank * s, (rank + 1) * s)`` with ``s = batch_size / world_size``, so the ranks of a
    data-parallel run together see exactly the batches one process would. Every rank fills
    the same shuffle buffers (the reads repeat; the operating system's page cache shares
    them on one machine) and keeps its rows.
    """

    def __init__(
        self,
        store: ActivationStore,
        hook: str,
        batch_size: int,
        *,
        split: Split,
        shuffle: bool,
        seed: int,
        memory_budget_bytes: int,
        epochs: int | None,
        start_batch: int,
        drop_last: bool,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if epochs is not None and epochs < 0:
            raise ValueError(f"epochs must be >= 0 or None (forever), got {epochs}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, {world_size=}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must split evenly over world_size={world_size} ranks")
        self.rank, self.world_size = rank, world_size
        self.store, self.hook, self.batch_size, self.split = store, hook, batch_size, split
        self.shuffle, self.seed, self.epochs, self.drop_last, self.device = shuffle, seed, epochs, drop_last, device
        self.memory_budget_bytes = memory_budget_bytes
        self.ranges = store.ranges(split)
        self.batches_per_epoch = store.batches_per_epoch(batch_size, split, drop_last)
        if self.batches_per_epoch == 0:
            raise ValueError(f"Split {split!r} has {store.n_rows(split)} rows, fewer than one batch of {batch_size}.")
        row_bytes = store.d_in(hook) * store.dtype.itemsize
        self.buffer_rows = memory_budget_bytes // row_bytes
        # The buffer also holds the < batch_size rows carried from the previous one.
        self.capacity = self.buffer_rows - (batch_size - 1)
        largest = max(r.hi - r.lo for r in self.ranges)
        if largest > self.capacity:
            need = (largest + batch_size - 1) * row_bytes
            raise ValueError(
                f"memory_budget_bytes={memory_budget_bytes} holds {self.buffer_rows} rows of {hook}, but one shard "
                f"has {largest} rows (plus up to {batch_size - 1} carried rows). Give at least {need} bytes, a "
                "smaller batch_size, or build the store with a smaller shard_tokens."
            )
        self.position = start_batch
        self.peak_buffer_rows = 0  # most rows held at once (buffer + carried), to check the budget
        self._batches = self._generate()

    def __iter__(self) -> BatchIterator:
        return self

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the remaining batches (JSON-friendly): a checkpoint saves it
        and ``store.iter_batches(**state)`` continues exactly where this iterator is. The
        memory budget is included because it decides which shards share a buffer."""
        return {
            "hook": self.hook,
            "batch_size": self.batch_size,
            "split": self.split,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "memory_budget_bytes": self.memory_budget_bytes,
            "epochs": self.epochs,
            "start_batch": self.position,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def __next__(self) -> Float[Tensor, "batch d_in"]:
        batch = next(self._batches)
        self.position += 1
        return batch

    def _generate(self) -> Iterator[Tensor]:
        epoch, first = divmod(self.position, self.batches_per_epoch)
        while self.epochs is None or epoch < self.epochs:
            yield from self._epoch(epoch, first)
            epoch, first = epoch + 1, 0

    def _groups(self, epoch: int) -> list[list[ShardRange]]:
        """This epoch's buffers: consecutive shards, in a seeded order, up to the capacity."""
        n = len(self.ranges)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else range(n)
        groups: list[list[ShardRange]] = [[]]
        rows = 0
        for i in order:
            rng = self.ranges[i]
            if groups[-1] and rows + rng.hi - rng.lo > self.capacity:
                groups.append([])
                rows = 0
            groups[-1].append(rng)
            rows += rng.hi - rng.lo
        return groups

    def _epoch(self, epoch: int, first_batch: int) -> Iterator[Tensor]:
        groups = self._groups(epoch)
        sizes = [sum(r.hi - r.lo for r in g) for g in groups]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        total = int(starts[-1])
        end = total - total % self.batch_size if self.drop_last else total
        cursor = first_batch * self.batch_size  # row offset in this epoch's stream
        carry: Tensor | None = None
        for g, group in enumerate(groups):
            if starts[g + 1] <= cursor or cursor >= end:
                continue
            buffer = torch.empty((sizes[g], self.store.d_in(self.hook)), dtype=self.store.dtype)
            self.store.fill(buffer, self.hook, group)
            perm = self._permutation(epoch, g, sizes[g])
            local = cursor - int(starts[g])
            while local < sizes[g] and cursor < end:
                self.peak_buffer_rows = max(self.peak_buffer_rows, sizes[g] + (0 if carry is None else len(carry)))
                have = 0 if carry is None else len(carry)
                take = min(self.batch_size - have, sizes[g] - local, end - cursor)
                rows = buffer[perm[local : local + take]]
                rows = rows if carry is None else torch.cat([carry, rows])
                local += take
                cursor += take
                if len(rows) == self.batch_size or cursor >= end:
                    carry = None
                    yield self._deliver(rows)
                else:
                    carry = rows.clone()
            del buffer

    def _deliver(self, rows: Tensor) -> Float[Tensor, "share d_in"]:
        """This rank's share of a batch, as fp32 on the device. Copies to a GPU go through
        pinned memory, so they run asynchronously (the next step queues behind them)."""
        if self.world_size > 1:
            rows = torch.tensor_split(rows, self.world_size)[self.rank]
        if self.device.type == "cuda":
            return rows.pin_memory().to(self.device, non_blocking=True).float()
        return rows.to(self.device).float()

    def _permutation(self, epoch: int, group: int, n: int) -> Tensor:
        if not self.shuffle:
            return torch.arange(n)
        return torch.from_numpy(np.random.default_rng([self.seed, epoch, group]).permutation(n))
