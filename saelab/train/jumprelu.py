"""JumpReLU + L0 (Rajamanoharan et al. 2024): a learned threshold per latent.

``feats = pre * (pre > threshold)``; the thresholds learn through straight-through
estimators (``kernels.ste``), and the penalty is the expected number of active latents.
Decoder rows are kept at unit norm, as in the paper, since there is no L1 term to cheat.
Exported as SAELens's ``jumprelu`` SAE with the thresholds as they are. One kernel (dense)
serves both ``kernel`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor, nn

from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.config import TrainConfig, non_negative_problems
from saelab.train.kernels.ste import jumprelu, step
from saelab.train.registry import Architecture, Calibration


@dataclass(frozen=True, kw_only=True)
class JumpReLUConfig(TrainConfig):
    """A JumpReLU SAE with an L0 penalty."""

    activation: ClassVar[str] = "jumprelu"

    l0_coefficient: float = 1.0
    """Weight of the L0 penalty (expected number of active latents per token)."""
    jumprelu_init_threshold: float = 0.01
    """Initial value of every latent's threshold (>= 0), on the normalised inputs' scale.
    Short runs need it near its final value."""
    jumprelu_bandwidth: float = 0.05
    """Width of the rectangle kernel of the straight-through estimator; a threshold gets
    gradient from pre-activations within bandwidth/2 of it."""

    def _problems(self) -> list[str]:
        out = super()._problems() + non_negative_problems(self, ("l0_coefficient", "jumprelu_init_threshold"))
        if self.jumprelu_bandwidth <= 0:
            out.append(f"jumprelu_bandwidth must be > 0, got {self.jumprelu_bandwidth}")
        return out


class TrainableJumpReLUSAE(TrainableSAE[JumpReLUConfig]):
    """JumpReLU + L0, with a ``threshold [d_sae]`` parameter."""

    sae_lens_architecture: ClassVar[str] = "jumprelu"

    threshold: nn.Parameter

    def _init_extra(self, device: torch.device, dtype: torch.dtype) -> None:
        init = torch.full((self.cfg.d_sae,), self.cfg.jumprelu_init_threshold, device=device, dtype=dtype)
        self.threshold = nn.Parameter(init)

    def _activate(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        return pre_BF.relu() * (pre_BF > self.threshold)

    def _train_forward(self, x_BD: Tensor, kernel: str) -> TrainStepOutput:
        pre_BF = self._pre_acts(x_BD)
        bw = self.cfg.jumprelu_bandwidth
        feats_BF = jumprelu(pre_BF, self.threshold, bw)
        x_hat = self._decode_train(feats_BF)
        # Summed in the master dtype: bfloat16 cannot count past 256 exactly.
        l0 = step(pre_BF, self.threshold, bw).sum(-1, dtype=self.dtype).mean()
        return self._step_output(x_BD, x_hat, {"l0": self.cfg.l0_coefficient * l0}, dense_feats=feats_BF)

    @torch.no_grad()
    def post_step(self) -> None:
        super().post_step()
        # A negative threshold would let negative pre-activations through and break the
        # equality with ReLU-then-gate that SAELens's JumpReLU encode relies on.
        self.threshold.clamp_(min=0.0)

    def sae_lens_tensors(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.detach().clone()}


ARCHITECTURE = Architecture(
    name="jumprelu",
    config=JumpReLUConfig,
    sae=TrainableJumpReLUSAE,
    calibration=Calibration(
        field="l0_coefficient",
        method="bisect",
        stall_hint="the threshold init or bandwidth may be too small for the activations' scale",
    ),
)
