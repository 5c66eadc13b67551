"""Selecting a batch's largest pre-activations (BatchTopK), fast and plain.

The plain way, one top-(k x batch) over the flattened ``[batch, d_sae]`` tensor, is what
dominates a BatchTopK step on CPU, several times a per-token top-k. The fast way takes each
token's ``CANDIDATES_PER_K x k`` largest as candidates and the batch's top from those, which
is exact whenever no token has all its candidates chosen: a token's other entries are all
below its candidates, and a candidate left out means the threshold passed above it. Tokens
that had all theirs chosen (a loud token may take far more than k latents) are then searched
whole.

On CUDA the plain way is the faster, so the two stages run on CPU only. ``bench/README.md``
gives the times these choices rest on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

LocalSelect = Callable[[Tensor, int], Tensor]

CANDIDATES_PER_K = 4
"""Candidates per token, in units of k: fewer is faster when no token is loud, more when a few
are (the measurement: ``bench/README.md``)."""


def batch_top_indices(pre_BF: Float[Tensor, "batch d_sae"], k: int) -> Int[Tensor, " k_times_batch"]:
    """Flat positions (``b * d_sae + f``, in no order) of the ``k x batch`` largest entries."""
    B, F = pre_BF.shape
    n, m = k * B, min(F, CANDIDATES_PER_K * k)
    flat = pre_BF.reshape(-1)
    if m == F or pre_BF.device.type != "cpu":
        return flat.topk(n, sorted=False).indices
    values, idx = pre_BF.topk(m, dim=-1, sorted=False)
    candidates = (torch.arange(B, device=pre_BF.device)[:, None] * F + idx).reshape(-1)
    chosen = values.reshape(-1).topk(n, sorted=False).indices
    full = torch.bincount(chosen.div(m, rounding_mode="floor"), minlength=B) == m
    if bool(full.any()):
        # Taking those tokens whole can only raise the threshold, so no other token fills up.
        whole = (full.nonzero()[:, :1] * F + torch.arange(F, device=pre_BF.device)).reshape(-1)
        candidates = torch.cat([candidates[~full[candidates.div(F, rounding_mode="floor")]], whole])
        chosen = flat[candidates].topk(n, sorted=False).indices
    return candidates[chosen]


def batch_top_indices_reference(pre_BF: Float[Tensor, "batch d_sae"], k: int) -> Int[Tensor, " k_times_batch"]:
    """What :func:`batch_top_indices` selects, plainly: one top-k over the flattened tensor."""
    return pre_BF.reshape(-1).topk(k * pre_BF.shape[0], sorted=False).indices


def batch_top_indices_across(
    pre_BF: Float[Tensor, "batch d_sae"], k: int, replicas: Replicas, select: LocalSelect
) -> Int[Tensor, " n_kept"]:
    """This rank's share of the ``k x global batch`` largest entries of a batch spread over
    ``replicas`` (each rank holding ``batch`` tokens), as flat positions in its own tensor.

    The global top can take all of its entries from one rank, so each rank offers its own
    top ``k x global batch`` (``select`` with ``k x size``); the smallest value of the
    global top among every offer is the threshold. Each rank keeps its entries above it,
    and of those equal to it (ties, common in bfloat16) only as many as the global count
    leaves, the lower ranks first, so that together they keep exactly ``k x global batch``:
    the set one process would select from the whole batch, up to which ties it keeps.
    """
    B, F = pre_BF.shape
    n_global = k * B * replicas.size
    idx = select(pre_BF, min(k * replicas.size, F))
    values = pre_BF.reshape(-1)[idx]
    values = values if values.dtype == torch.float64 else values.float()  # exact for every narrower dtype
    offers = replicas.gather(values)  # every rank offers the same number, in rank order
    threshold = offers.topk(min(n_global, offers.numel()), sorted=False).values.min()
    keep = values > threshold
    ties = (values == threshold).nonzero().squeeze(1)
    free = n_global - int((offers > threshold).sum())  # places left for tied entries
    earlier = int((offers[: replicas.rank * values.numel()] == threshold).sum())
    keep[ties[: max(0, min(free - earlier, ties.numel()))]] = True
    return idx[keep]
