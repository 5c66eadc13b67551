"""BatchTopK + AuxK (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders").

Training: the batch keeps its ``k x batch_size`` largest activations over the flattened
``[batch, d_sae]`` pre-activations (after ReLU), so L0 is k on average and a token may use
more latents or fewer than k. AuxK on dead latents works as for TopK.

Inference cannot depend on the rest of the batch, so one threshold stands in for the
selection: ``feats = relu(pre) * (pre > threshold)``. As in SAELens 6.x
(``BatchTopKTrainingSAE.update_topk_threshold``), it is an exponential moving average
(rate ``topk_threshold_lr``, in float64) of each training batch's smallest kept positive
activation, updated in training mode only. The SAE is exported as a SAELens ``jumprelu``
SAE with that threshold on every latent, which encodes exactly as :meth:`encode` does.

Kernels: ``fast`` selects in two stages (``kernels.select``) and runs TopK's sparse kernels
over the ``k x batch_size`` selected pairs, a different number per token; ``reference``
selects with one flat top-k and computes densely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from saelab.train.base import TrainStepOutput
from saelab.train.kernels.pairs import ActivePairs
from saelab.train.kernels.select import (
    LocalSelect,
    batch_top_indices,
    batch_top_indices_across,
    batch_top_indices_reference,
)
from saelab.train.registry import Architecture, Calibration
from saelab.train.topk import TopKConfig, TopKFamilySAE


@dataclass(frozen=True, kw_only=True)
class BatchTopKConfig(TopKConfig):
    """A BatchTopK SAE with the AuxK loss on dead latents."""

    activation: ClassVar[str] = "batchtopk"

    k: int = 32
    """Latents kept per token on average: each batch keeps its k x batch_size largest."""
    topk_threshold_lr: float = 0.01
    """Rate of the moving average that estimates the inference threshold from each batch's
    smallest kept activation (SAELens's name and default)."""

    def _problems(self) -> list[str]:
        out = super()._problems()
        if not 0 < self.topk_threshold_lr <= 1:
            out.append(f"topk_threshold_lr must be in (0, 1], got {self.topk_threshold_lr}")
        return out


class TrainableBatchTopKSAE(TopKFamilySAE[BatchTopKConfig]):
    """BatchTopK + AuxK, with the inference threshold in the float64 buffer ``topk_threshold``."""

    sae_lens_architecture: ClassVar[str] = "jumprelu"

    topk_threshold: Tensor

    def _init_extra(self, device: torch.device, dtype: torch.dtype) -> None:
        # float64: an average of ~1e4 steps at rate 0.01 loses digits in float32.
        self.register_buffer("topk_threshold", torch.zeros((), dtype=torch.float64, device=device))

    def _activate(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        # The threshold in pre's dtype, as SAELens compares with the float32 one it loads.
        return pre_BF.relu() * (pre_BF > self.topk_threshold.to(pre_BF.dtype))

    # Both select among pre rather than relu(pre): the same kept set wherever it matters,
    # since a winner at or below 0 contributes 0 either way.

    # Under data parallelism "the batch" is the global batch, spread over the replicas.

    def _batch_top(self, pre_BF: Tensor, select: LocalSelect) -> Int[Tensor, " n_kept"]:
        if self.replicas is None:
            return select(pre_BF, self.cfg.k)
        return batch_top_indices_across(pre_BF, self.cfg.k, self.replicas, select)

    def _select(self, pre_BF: Tensor) -> ActivePairs:
        flat_idx = self._batch_top(pre_BF, batch_top_indices)
        return ActivePairs.from_flat(flat_idx, pre_BF.shape[0], self.cfg.d_sae)

    def _select_reference(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        flat_idx = self._batch_top(pre_BF, batch_top_indices_reference)
        values = pre_BF.reshape(-1)[flat_idx].to(self.dtype).relu()
        flat = pre_BF.new_zeros(pre_BF.numel(), dtype=self.dtype).scatter(0, flat_idx, values)
        return flat.view(pre_BF.shape)

    @torch.no_grad()
    def _observe(self, out: TrainStepOutput) -> None:
        kept = out.active_values
        inf = torch.tensor(math.inf, dtype=torch.float64, device=kept.device)
        smallest = (kept.min().to(torch.float64) if kept.numel() else inf).reshape(1)
        if self.replicas is not None:  # the smallest kept activation of the global batch
            smallest = self.replicas.min_(smallest)
        if math.isfinite(float(smallest)):
            rate = self.cfg.topk_threshold_lr
            self.topk_threshold.mul_(1 - rate).add_(rate * smallest[0])

    def sae_lens_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.topk_threshold.to(self.dtype).expand(self.cfg.d_sae).clone()}

    def _extra_repr_fields(self) -> str:
        return f", k={self.cfg.k}, topk_threshold={float(self.topk_threshold):.4g}"


ARCHITECTURE = Architecture(
    name="batchtopk",
    config=BatchTopKConfig,
    sae=TrainableBatchTopKSAE,
    calibration=Calibration(field="k", method="set_to_target"),
)
