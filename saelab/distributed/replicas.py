"""The ranks that hold copies of one SAE, and the collectives they need to stay copies.

Data-parallel training keeps one copy of the SAE per rank. Each rank computes the gradient
of its own share of the global batch; :meth:`Replicas.average_gradients` averages them, so
every copy takes the same optimiser step and stays bit-identical to the others (all-reduce
hands every rank the same sum). Everything else a step decides from the batch (which
latents fired, BatchTopK's threshold) goes through :meth:`sum_`, :meth:`min_` or
:meth:`gather` for the same reason.

Several SAEs can train at once, one per group of ranks: :func:`split_world` cuts the world
into groups and gives each rank the :class:`Replicas` of its own group.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from saelab._util.keys import stable_hash
from saelab.distributed.world import World


@dataclass
class Replicas:
    """One group of ranks training the same SAE."""

    ranks: tuple[int, ...]
    """Global ranks of the group, in order; the first is its leader."""
    rank: int
    """This process's index within the group."""
    group: Any = None
    """The torch process group (None: the whole world)."""
    bytes_reduced: int = field(default=0)
    """Bytes this rank has sent into all-reduces so far (gradients and statistics)."""
    _flat: Tensor | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.ranks)

    @property
    def is_leader(self) -> bool:
        """The rank that writes this group's checkpoints and results."""
        return self.rank == 0

    def sum_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the group, in place."""
        if self.size == 1:  # a group of one has nothing to exchange
            return tensor
        self.bytes_reduced += tensor.numel() * tensor.element_size()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def min_(self, tensor: Tensor) -> Tensor:
        """Element-wise minimum over the group, in place."""
        if self.size == 1:
            return tensor
        self.bytes_reduced += tensor.numel() * tensor.element_size()
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.group)
        return tensor

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the group, in one all-reduce.

        A parameter without a gradient on this rank gets zeros, so that every rank sends the
        same layout (a latent that fired nowhere here may have fired elsewhere).
        """
        if self.size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self._bucket(grads)
        torch.cat([g.reshape(-1) for g in grads], out=flat)
        self.sum_(flat).div_(self.size)
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            reduced = flat[offset : offset + grad.numel()].view_as(grad)
            offset += grad.numel()
            if param.grad is None:
                param.grad = reduced.clone()
            else:
                param.grad.copy_(reduced)

    def _bucket(self, grads: list[Tensor]) -> Tensor:
        """One flat buffer for every gradient, kept across steps: a fresh 20 MB tensor each
        step would cost its page faults again on CPU."""
        numel = sum(g.numel() for g in grads)
        bucket = self._flat
        like = grads[0]
        if bucket is None or (bucket.numel(), bucket.dtype, bucket.device) != (numel, like.dtype, like.device):
            bucket = self._flat = torch.empty(numel, dtype=like.dtype, device=like.device)
        return bucket

    def gather(self, tensor: Tensor) -> Tensor:
        """Concatenate every rank's ``tensor`` (same shape on all) along dim 0, in rank order."""
        if self.size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.cat(parts)

    def agree(self, value: Any, what: str) -> None:
        """Raise on every rank unless all ranks hold the same ``value`` (compared by hash).

        Ranks launched with different arguments would otherwise train on, or wait for,
        different things, and hang or diverge silently.
        """
        digest = stable_hash(json.loads(json.dumps(value, default=str)))
        digests: list[Any] = [None] * self.size
        dist.all_gather_object(digests, digest, group=self.group)
        differ = [self.ranks[i] for i, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise ValueError(
                f"Ranks disagree on {what}: ranks {differ} differ from rank {self.ranks[0]}. Launch every rank "
                "with the same arguments (and the same saelab version)."
            )

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    @contextlib.contextmanager
    def leader_first(self) -> Iterator[None]:
        """Run the block on the leader, then, once it is done, on every other rank (for work
        that the first to do it changes for the others: converting and caching a model,
        moving a damaged checkpoint aside)."""
        if not self.is_leader:
            self.barrier()
        yield
        if self.is_leader:
            self.barrier()


def whole_world(world: World) -> Replicas:
    """Every rank of ``world`` as one group."""
    return Replicas(ranks=tuple(range(world.world_size)), rank=world.rank)


def split_world(world: World, n_groups: int) -> tuple[int, Replicas]:
    """Cut the world into ``n_groups`` equal groups of consecutive ranks; returns this rank's
    group index and its :class:`Replicas`. Every rank must call it, with the same ``n_groups``."""
    if n_groups < 1 or world.world_size % n_groups:
        raise ValueError(
            f"Cannot split {world.world_size} rank(s) into {n_groups} equal groups; launch a multiple of "
            f"{n_groups} processes (torchrun --nproc_per_node) or train fewer SAEs at once."
        )
    size = world.world_size // n_groups
    if n_groups == 1:
        return 0, whole_world(world)
    mine: Replicas | None = None
    for g in range(n_groups):  # every rank creates every group, in the same order
        ranks = tuple(range(g * size, (g + 1) * size))
        group = dist.new_group(list(ranks), timeout=timedelta(seconds=world.timeout_s))
        if world.rank in ranks:
            mine = Replicas(ranks=ranks, rank=ranks.index(world.rank), group=group)
    assert mine is not None
    return world.rank // size, mine
