"""Matryoshka BatchTopK + AuxK (Bussmann et al. 2025, "Learning Multi-Level Features with
Matryoshka Sparse Autoencoders").

One dictionary, read at several nested widths ``m_1 < m_2 < ... < m_n = d_sae``: prefix
``i`` is latents ``[0, m_i)``, and it must reconstruct the input on its own. The loss is the
*sum* of the prefixes' reconstruction losses, plus AuxK,

    loss = sum_i ||x - (f[:, :m_i] @ W_dec[:m_i] + b_dec)||^2 + aux,

the sum, as in the paper, SAELens (``MatryoshkaBatchTopKTrainingSAE``) and the authors' code
(with a mean, AuxK's weight against the reconstruction would change with the number of
levels). The first latents get a gradient from every level, so they learn the general,
frequent features and the later latents add the specific ones; a general feature keeps its
own latent rather than being absorbed (its latent going silent wherever a more specific
one fires). Latent order therefore means something: a latent's index says its level.

``f`` is BatchTopK's: the selection is made once over all d_sae latents (the batch keeps its
``k x batch_size`` largest activations), and each prefix reconstructs from the kept latents
that fall inside it. ``losses["mse"]`` is the full dictionary's, as for every architecture
(so explained variance means the same); ``losses["mse_{m}"]`` is inner prefix m's. AuxK works
as for BatchTopK: dead latents predict the full reconstruction's residual.

Inference is BatchTopK's too: one threshold, the float64 moving average of each training
batch's smallest kept activation, so ``feats = relu(pre) * (pre > threshold)`` and a token's
code does not depend on its batch. The SAE is exported as a SAELens ``jumprelu`` SAE with that
threshold on every latent; the nesting survives only as the latents' order, and the prefix
sizes are recorded in ``cfg.json`` (``metadata.saelab_train_config.prefix_sizes``).

Kernels: ``reference`` is BatchTopK's dense step plus one dense decode per inner prefix.
``fast`` selects and back-propagates the encoder as BatchTopK's does; the decoder splits the
kept pairs by level and decodes each level's pairs once, the prefix reconstructions being
running sums, so the sparse work is BatchTopK's whatever the number of levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import ClassVar

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from saelab.train.base import TrainStepOutput
from saelab.train.batchtopk import BatchTopKConfig, TrainableBatchTopKSAE
from saelab.train.kernels.dense import matmul
from saelab.train.kernels.pairs import ActivePairs
from saelab.train.kernels.sparse import decode_pairs
from saelab.train.registry import Architecture, Calibration

DEFAULT_LADDER: tuple[int, ...] = (16, 8, 4, 2)
"""Empty ``prefix_sizes`` means d_sae divided by these (then d_sae itself): each prefix twice
the one before, as in the authors' training script (bartbussmann/matryoshka_sae), whose ladder
starts lower, at d_sae/64, for a dictionary twice as wide relative to d_in as ours."""


@dataclass(frozen=True, kw_only=True)
class MatryoshkaBatchTopKConfig(BatchTopKConfig):
    """A Matryoshka BatchTopK SAE: BatchTopK whose nested prefixes each reconstruct the input."""

    activation: ClassVar[str] = "matryoshka_batchtopk"

    prefix_sizes: tuple[int, ...] = ()
    """Widths of the nested dictionaries, strictly increasing, each in [1, d_sae]: prefix i is
    latents [0, prefix_sizes[i]). The full dictionary is always the last level: d_sae is
    appended when the last size is smaller, and may be listed (SAELens's convention), so
    (256, 1024) and (256, 1024, d_sae) mean the same; (d_sae,) alone is plain BatchTopK.
    Empty (the default): d_sae/16, d_sae/8, d_sae/4, d_sae/2 (see ``DEFAULT_LADDER``)."""

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; accept that so from_json(to_json()) round-trips.
        if isinstance(self.prefix_sizes, list):
            object.__setattr__(self, "prefix_sizes", tuple(self.prefix_sizes))
        super().__post_init__()

    @property
    def resolved_prefix_sizes(self) -> tuple[int, ...]:
        """Every level's width, ascending, the last one d_sae (defaults filled in)."""
        sizes = self.prefix_sizes
        if not sizes:
            sizes = tuple(dict.fromkeys(s for s in (self.d_sae // d for d in DEFAULT_LADDER) if s > 0))
        return sizes if sizes and sizes[-1] == self.d_sae else (*sizes, self.d_sae)

    def _problems(self) -> list[str]:
        out = super()._problems()
        sizes = self.prefix_sizes
        if not isinstance(sizes, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            return [*out, f"prefix_sizes must be a tuple of integers, got {sizes!r}"]
        if any(s <= 0 for s in sizes):
            out.append(f"prefix_sizes must all be positive, got {sizes}")
        if any(b <= a for a, b in pairwise(sizes)):
            out.append(f"prefix_sizes must be strictly increasing, got {sizes}")
        if isinstance(self.d_sae, int) and sizes and max(sizes) > self.d_sae:
            out.append(f"prefix_sizes must be at most d_sae={self.d_sae}, got {sizes}")
        return out


class TrainableMatryoshkaBatchTopKSAE(TrainableBatchTopKSAE):
    """Matryoshka BatchTopK + AuxK: BatchTopK's selection, threshold and export, with the
    reconstruction loss summed over the nested prefixes ``prefix_sizes``."""

    prefix_sizes: tuple[int, ...]
    """Every level's width, the last one d_sae (``MatryoshkaBatchTopKConfig.resolved_prefix_sizes``)."""

    def _init_extra(self, device: torch.device, dtype: torch.dtype) -> None:
        super()._init_extra(device, dtype)
        cfg = self.cfg
        assert isinstance(cfg, MatryoshkaBatchTopKConfig)
        self.prefix_sizes = cfg.resolved_prefix_sizes

    def _train_reference(self, x_BD: Tensor) -> TrainStepOutput:
        out = super()._train_reference(x_BD)  # BatchTopK's dense step: the full level and AuxK
        feats_BF = out.feats
        inner = {
            f"mse_{m}": _mse(matmul(feats_BF[:, :m], self.W_dec[:m], self.compute_dtype, self.dtype) + self.b_dec, x_BD)
            for m in self.prefix_sizes[:-1]
        }
        return self._step_output(x_BD, out.x_hat, {**inner, "aux": out.losses["aux"]}, dense_feats=feats_BF)

    def _decode_kept(
        self, values: Float[Tensor, " nnz"], pairs: ActivePairs, x_BD: Tensor
    ) -> tuple[Float[Tensor, "batch d_in"], dict[str, Tensor]]:
        """The full reconstruction and each inner prefix's loss. Each level's pairs are
        decoded once; prefix i's reconstruction is b_dec plus the levels up to i."""
        inner: dict[str, Tensor] = {}
        x_hat = self.b_dec.expand_as(x_BD)
        start = 0
        for m in self.prefix_sizes:
            with torch.no_grad():
                level = (pairs.cols >= start) & (pairs.cols < m)
            x_hat = x_hat + decode_pairs(values[level], self.W_dec, _subset(pairs, level))
            if m < self.cfg.d_sae:
                inner[f"mse_{m}"] = _mse(x_hat, x_BD)
            start = m
        return x_hat, inner

    def _extra_repr_fields(self) -> str:
        return f"{super()._extra_repr_fields()}, prefix_sizes={self.prefix_sizes}"


def _mse(x_hat_BD: Tensor, x_BD: Tensor) -> Float[Tensor, ""]:
    """A reconstruction loss as ``TrainableSAE._step_output`` computes it (summed over d_in,
    averaged over the batch)."""
    return (x_hat_BD - x_BD).pow(2).sum(-1).mean()


def _subset(pairs: ActivePairs, keep: Bool[Tensor, " nnz"]) -> ActivePairs:
    """The kept pairs, in the same order (so latents still ascend per token)."""
    rows = pairs.rows[keep]
    crow = rows.new_zeros(pairs.n_tokens + 1)
    torch.cumsum(torch.bincount(rows, minlength=pairs.n_tokens), 0, out=crow[1:])
    return ActivePairs(rows, pairs.cols[keep], crow, pairs.n_latents)


ARCHITECTURE = Architecture(
    name="matryoshka_batchtopk",
    config=MatryoshkaBatchTopKConfig,
    sae=TrainableMatryoshkaBatchTopKSAE,
    calibration=Calibration(field="k", method="set_to_target"),
)
