"""The parts of a training run that change when several ranks train one SAE together.

Data parallelism splits each global batch of ``cfg.batch_size`` rows into equal shares, one
per replica (``cfg.batch_size / replicas.size`` rows each). A step's gradient is averaged in
:func:`saelab.train.optim.train_step` and the firing counts are summed in
``TrainableSAE.forward_train``; this module holds what the loop around them needs: the
share size, batch sources that serve one share, the global statistics a run starts from
(input scale, ``b_dec``) and the global metrics it logs, and a check that the copies are
still identical.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from saelab._util.keys import tensors_digest
from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.config import TrainConfig

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

Source = Callable[[int], Iterator[Float[Tensor, "batch d_in"]]]


def share_size(cfg: TrainConfig, replicas: Replicas | None) -> int:
    """Rows of each global batch one replica trains on (the whole batch when alone)."""
    if replicas is None:
        return cfg.batch_size
    if cfg.batch_size % replicas.size:
        raise ValueError(
            f"batch_size={cfg.batch_size} is the global batch and must split evenly over the {replicas.size} "
            f"ranks training this SAE; use a multiple of {replicas.size}."
        )
    return cfg.batch_size // replicas.size


def share_of(source: Source, replicas: Replicas) -> Source:
    """A source serving this replica's rows of each global batch ``source`` yields.

    Every rank reads the whole global batch and keeps its share: right for any source, but
    the reading is repeated on every rank. An activation store serves shares directly
    (``ActivationStore.iter_batches(rank=..., world_size=...)``).
    """

    def shares(start: int) -> Iterator[Tensor]:
        for batch in source(start):
            if batch.shape[0] % replicas.size:
                raise ValueError(f"A global batch of {batch.shape[0]} rows does not split over {replicas.size} ranks")
            size = batch.shape[0] // replicas.size
            yield batch[replicas.rank * size : (replicas.rank + 1) * size]

    return shares


def input_scale(
    batches: Iterator[Float[Tensor, "batch d_in"]], d_in: int, n_batches: int, replicas: Replicas | None = None
) -> float:
    """``sqrt(d_in) / mean ||x||`` over the first ``n_batches`` (global) batches: the
    constant that gives inputs a mean norm of sqrt(d_in) (SAELens's ``expected_average_only_in``)."""
    sums = torch.zeros(2, dtype=torch.float64)
    for batch in itertools.islice(batches, n_batches):
        norms = batch.double().norm(dim=-1)
        sums += torch.stack([norms.sum().cpu(), torch.tensor(float(norms.numel()), dtype=torch.float64)])
    if replicas is not None:
        sums = replicas.sum_(sums.to(_collective_device(replicas))).cpu()
    total, count = float(sums[0]), float(sums[1])
    if count == 0:
        raise ValueError("The batch source yielded no batches to estimate the normalisation from.")
    mean = total / count
    if not (math.isfinite(mean) and mean > 0):
        raise ValueError(f"Cannot normalise activations whose mean norm is {mean}; check the data.")
    return math.sqrt(d_in) / mean


def whole_batch(batch: Float[Tensor, "share d_in"], replicas: Replicas | None) -> Float[Tensor, "batch d_in"]:
    """The global batch, every replica's share in rank order (for ``b_dec``'s initialisation)."""
    return batch if replicas is None else replicas.gather(batch)


def metrics(out: TrainStepOutput, batch: Tensor, sae: TrainableSAE[Any]) -> dict[str, float]:
    """Loss, its parts, L0 and explained variance of the step, over the global batch.

    Alone they are the step's own numbers. Replicas average the losses (equal shares) and
    pool the sums explained variance is made of; L0 is global already (the firing counts
    are summed in ``forward_train``).
    """
    names = ["loss", *(f"loss_{name}" for name in out.losses)]
    parts = [out.loss, *out.losses.values()]
    replicas = sae.replicas
    if replicas is None:
        values = {name: float(p.detach()) for name, p in zip(names, parts, strict=True)}
        return {**values, "l0": float(out.l0), "explained_variance": float(out.explained_variance)}
    x_BD = batch.to(sae.device, sae.dtype).double() * float(sae.input_scale)
    pooled = torch.cat([torch.stack([p.detach().double() for p in parts]), x_BD.pow(2).sum().reshape(1), x_BD.sum(0)])
    pooled = replicas.sum_(pooled.to(_collective_device(replicas))).cpu()
    n = x_BD.shape[0] * replicas.size
    means = pooled[: len(parts)] / replicas.size
    sum_sq, sum_x = pooled[len(parts)], pooled[len(parts) + 1 :]
    total = max(float(sum_sq - sum_x.dot(sum_x) / n), torch.finfo(torch.float64).tiny)
    values = {name: float(v) for name, v in zip(names, means, strict=True)}
    return {**values, "l0": float(out.l0), "explained_variance": 1 - values["loss_mse"] * n / total}


def check_in_sync(sae: TrainableSAE[Any], step: int) -> None:
    """Raise unless every replica holds bit-identical weights and statistics (checked at
    each checkpoint: a copy that drifted would make the checkpoint describe one rank only)."""
    if sae.replicas is not None:
        digest = tensors_digest(sae.state_dict())
        sae.replicas.agree(digest, f"the SAE's weights at step {step} (the replicas drifted apart)")


def _collective_device(replicas: Replicas) -> torch.device:
    """NCCL reduces GPU tensors only; gloo takes CPU ones."""
    import torch.distributed as dist

    backend = dist.get_backend(replicas.group)
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
