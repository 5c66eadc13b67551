"""Synthetic activations with known sparse structure, for the training and emergence tests.

``x = codes @ dictionary`` where each token uses a few of ``n_atoms`` unit-norm directions.
A good SAE recovers them, and batch ``i`` is a pure function of ``(seed, i)``, which makes
it a valid resumable batch source for :func:`saelab.train.trainer.fit`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from jaxtyping import Float
from torch import Tensor


def synthetic_dictionary(n_atoms: int, d_in: int, seed: int = 0) -> Float[Tensor, "n_atoms d_in"]:
    gen = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d_in, generator=gen)
    return atoms / atoms.norm(dim=1, keepdim=True)


def synthetic_batch(
    index: int, batch_size: int, dictionary: Tensor, *, p_active: float = 0.05, seed: int = 0
) -> Float[Tensor, "batch d_in"]:
    """Batch number ``index``: each atom is active with probability ``p_active``, magnitude in [0, 3)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    n_atoms = dictionary.shape[0]
    active = torch.rand(batch_size, n_atoms, generator=gen) < p_active
    magnitude = 3 * torch.rand(batch_size, n_atoms, generator=gen)
    return (active * magnitude) @ dictionary


def synthetic_source(
    d_in: int, batch_size: int, *, n_atoms: int = 64, p_active: float = 0.05, seed: int = 0
):
    """A batch source: ``source(start)`` yields batches ``start, start+1, ...`` forever."""
    dictionary = synthetic_dictionary(n_atoms, d_in, seed)

    def source(start: int) -> Iterator[Tensor]:
        index = start
        while True:
            yield synthetic_batch(index, batch_size, dictionary, p_active=p_active, seed=seed)
            index += 1

    return source
