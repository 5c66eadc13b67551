"""ReLU + L1: the standard SAE, with the L1 penalty weighted by decoder row norms.

Weighting by decoder norms (Anthropic, April 2024 update) makes the penalty invariant to
trading a latent's magnitude against its decoder norm, so nothing needs projecting after
each step and Adam's update is never undone. Exported as SAELens's ``standard`` SAE.

Kernels (``TrainConfig.kernel``):

* ``reference``: the plain dense computation, autograd end to end (~6 matmuls of
  batch x d_in x d_sae).
* ``fast``: the sparse kernels over the (token, latent) pairs whose pre-activation is
  positive, a different number per token. This is exact, not an approximation: elsewhere
  ReLU's value and gradient are both 0. Sparse work only pays while few latents are active,
  so a batch with more than :data:`RELU_SPARSE_MAX_DENSITY` of its pre-activations positive
  (the start of training, before the L1 penalty bites) runs densely instead, from the same
  pre-activations. That dense step is still cheaper than the reference's: b_dec's gradient
  through the encoder input needs a matrix-vector product, not a sixth matmul, and the L1
  term rides along in the decoder matmul.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.config import TrainConfig, non_negative_problems
from saelab.train.kernels.dense import dense_relu_encode, matmul
from saelab.train.kernels.pairs import ActivePairs
from saelab.train.kernels.sparse import decode_pairs, selected_pre_acts
from saelab.train.registry import Architecture, Calibration

RELU_SPARSE_MAX_DENSITY = 0.1
"""The fast kernel takes its sparse path while at most this share of a batch's
pre-activations is positive (10% of 4608 latents is an L0 of 461), and its dense step above.

The sparse step's work grows with the active pairs while the dense step's does not, so past
some density the dense step wins; 10% sits well below where the two broke even on a 2-core
CPU (``bench/README.md`` gives the measurement), a margin for other CPUs. GPUs, where dense
matmuls are relatively cheaper, likely break even lower; that is unmeasured.
"""


@dataclass(frozen=True, kw_only=True)
class ReLUConfig(TrainConfig):
    """A ReLU SAE with a decoder-norm-weighted L1 penalty."""

    activation: ClassVar[str] = "relu"

    l1_coefficient: float = 5.0
    """Weight of the L1 penalty sum_i f_i * ||W_dec[i]||. Its scale depends on the scale of
    the activations; calibrate it to a target L0 rather than guessing."""
    tied_decoder: bool = False
    """The decoder is the encoder's transpose (W_dec = W_enc.T), with no parameter of its own."""

    def _problems(self) -> list[str]:
        out = super()._problems()
        return out + non_negative_problems(self, ("l1_coefficient",))


class TrainableReLUSAE(TrainableSAE[ReLUConfig]):
    """ReLU + L1. With a tied decoder there is no ``W_dec`` parameter, and ``sae.W_dec`` is
    the view ``W_enc.T``."""

    sae_lens_architecture: ClassVar[str] = "standard"
    # The norm-weighted L1 cannot be cheated by rescaling rows, so rows stay free.
    unit_norm_decoder: ClassVar[bool] = False

    def _tied_decoder(self) -> bool:
        return self.cfg.tied_decoder

    def __getattr__(self, name: str) -> Any:
        # Expose the transpose under the parameter's name, so every caller (losses, export,
        # analysis) reads sae.W_dec either way.
        if name == "W_dec" and "W_dec" not in self._parameters and self.cfg.tied_decoder:
            return self.W_enc.t()
        return super().__getattr__(name)

    def _activate(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        return pre_BF.relu()

    def _train_forward(self, x_BD: Tensor, kernel: str) -> TrainStepOutput:
        if kernel == "reference":
            return self._train_reference(x_BD)
        with torch.no_grad():
            pre_BF = self._pre_acts_into_workspace(x_BD)
            active_BF = pre_BF > 0
            density = torch.count_nonzero(active_BF).item() / active_BF.numel()
        if density <= RELU_SPARSE_MAX_DENSITY:
            return self._train_sparse(x_BD, pre_BF, ActivePairs.from_mask(active_BF))
        return self._train_dense(x_BD, pre_BF)

    def _train_reference(self, x_BD: Tensor) -> TrainStepOutput:
        feats_BF = self._pre_acts(x_BD).relu()
        x_hat = self._decode_train(feats_BF)
        l1 = (feats_BF * self.W_dec.norm(dim=1)).sum(-1).mean()
        return self._step_output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, dense_feats=feats_BF)

    def _train_sparse(self, x_BD: Tensor, pre_BF: Tensor, pairs: ActivePairs) -> TrainStepOutput:
        # The pairs are exactly the positive pre-activations, where ReLU is the identity with
        # gradient 1; elsewhere its value and its gradient are both 0, so leaving them out
        # is exact, not an approximation.
        values = selected_pre_acts(x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, pairs)
        W_dec = self.W_dec
        x_hat = decode_pairs(values, W_dec, pairs) + self.b_dec
        l1 = (values * W_dec.norm(dim=1)[pairs.cols]).sum() / x_BD.shape[0]
        return self._step_output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, sparse_feats=pairs.csr(values))

    def _train_dense(self, x_BD: Tensor, pre_BF: Tensor) -> TrainStepOutput:
        # It has already computed ``pre`` to measure the density, so it must not run the
        # encoder matmul again.
        feats_BF = dense_relu_encode(x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, self.compute_dtype)
        # Each token's L1 term, feats @ ||W_dec rows||, rides along in the decoder matmul as
        # one more output column, so its gradient arrives inside the decoder's; the
        # reference's product allocates and sweeps [batch, d_sae] tensors three more times.
        W_aug = torch.cat([self.W_dec, self.W_dec.norm(dim=1, keepdim=True)], dim=1)
        out_BD = matmul(feats_BF, W_aug, self.compute_dtype, self.dtype)
        x_hat = out_BD[:, :-1] + self.b_dec
        l1 = out_BD[:, -1].mean()
        return self._step_output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, dense_feats=feats_BF)

    def _extra_repr_fields(self) -> str:
        return f", tied_decoder={self.cfg.tied_decoder}"


ARCHITECTURE = Architecture(
    name="relu",
    config=ReLUConfig,
    sae=TrainableReLUSAE,
    calibration=Calibration(field="l1_coefficient", method="bisect"),
)
