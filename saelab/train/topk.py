"""TopK + AuxK (Gao et al. 2024): each token keeps its k largest pre-activations.

Decoder rows stay at unit norm (the paper's choice; there is no L1 term to cheat), so the
exported SAELens ``topk`` SAE needs no ``rescale_acts_by_decoder_norm``. Dead latents learn
through the AuxK loss: the top ``aux_k`` dead latents of each token predict what the live
ones missed.

Kernels (``TrainConfig.kernel``):

* ``reference``: dense, autograd end to end.
* ``fast``: the encoder matmul stays dense (it has to find the winners), but the decoder,
  and the backward pass of both encoder and decoder, touch only the selected (token,
  latent) pairs, TopK's and AuxK's in one sparse encoder backward: one dense matmul, plus
  sparse work proportional to batch x (k + aux_k) x d_in.

:class:`TrainableTopKSAE` selects through two hooks, ``_select`` (fast) and
``_select_reference``; BatchTopK (``batchtopk``) reuses everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.config import TrainConfig, non_negative_problems, positive_int_problems
from saelab.train.kernels.dense import matmul
from saelab.train.kernels.pairs import ActivePairs
from saelab.train.kernels.sparse import decode_pairs, selected_pre_acts
from saelab.train.registry import Architecture, Calibration


@dataclass(frozen=True, kw_only=True)
class TopKConfig(TrainConfig):
    """A TopK SAE with the AuxK loss on dead latents."""

    activation: ClassVar[str] = "topk"

    k: int = 32
    """Latents kept per token."""
    aux_k: int | None = None
    """Dead latents the AuxK loss uses per token; None means d_in // 2 (the heuristic of
    Gao et al. 2024, Appendix B.1)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. use 1/32); 0 disables it."""

    @property
    def resolved_aux_k(self) -> int:
        """aux_k with its default filled in (never more than d_sae)."""
        return min(self.aux_k if self.aux_k is not None else max(self.d_in // 2, 1), self.d_sae)

    def _problems(self) -> list[str]:
        out = super()._problems() + positive_int_problems(self, ("k",))
        if out:
            return out
        if self.k > self.d_sae:
            out.append(f"k={self.k} is larger than d_sae={self.d_sae}")
        if self.aux_k is not None and not (1 <= self.aux_k <= self.d_sae):
            out.append(f"aux_k must be in [1, d_sae={self.d_sae}] or None, got {self.aux_k}")
        return out + non_negative_problems(self, ("aux_coefficient",))


class AuxPlan(NamedTuple):
    """What the AuxK loss does this step."""

    dead: Bool[Tensor, " d_sae"]
    k_aux: int
    """Dead latents used per token (0: no AuxK loss this step)."""
    scale: float
    """Down-weighting when there are fewer dead latents than aux_k."""


T = TypeVar("T", bound=TopKConfig)


class TopKFamilySAE(TrainableSAE[T]):
    """What TopK and BatchTopK share: unit-norm decoder rows, AuxK on dead latents, and both
    kernels around the ``_select`` / ``_select_reference`` hooks."""

    def _select(self, pre_BF: Tensor) -> ActivePairs:
        """The kept (token, latent) pairs, latents ascending per token (no autograd)."""
        raise NotImplementedError

    def _select_reference(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        """The kept activations (ReLU'd), dense, in the parameters' dtype."""
        raise NotImplementedError

    def _train_forward(self, x_BD: Tensor, kernel: str) -> TrainStepOutput:
        return self._train_reference(x_BD) if kernel == "reference" else self._train_fast(x_BD)

    def _train_reference(self, x_BD: Tensor) -> TrainStepOutput:
        plan = self._aux_plan()
        pre_BF = self._pre_acts(x_BD)
        feats_BF = self._select_reference(pre_BF)
        x_hat = self._decode_train(feats_BF)
        aux = x_hat.new_zeros(())
        if plan.k_aux > 0:
            # No ReLU on the auxiliary latents: dead latents mostly have negative
            # pre-activations, and a ReLU would block the very gradient meant to revive them.
            aux_values, aux_idx = pre_BF.masked_fill(~plan.dead, float("-inf")).topk(plan.k_aux, dim=-1, sorted=False)
            aux_feats = x_BD.new_zeros(pre_BF.shape).scatter(-1, aux_idx, aux_values.to(self.dtype))
            e_hat = matmul(aux_feats, self.W_dec, self.compute_dtype, self.dtype)
            aux = self._aux_loss(e_hat, x_BD, x_hat, plan.scale)
        return self._step_output(x_BD, x_hat, {"aux": aux}, dense_feats=feats_BF)

    def _train_fast(self, x_BD: Tensor) -> TrainStepOutput:
        plan = self._aux_plan()
        aux_pairs = joined = None
        with torch.no_grad():
            pre_BF = self._pre_acts_into_workspace(x_BD)
            pairs = self._select(pre_BF)
            if plan.k_aux > 0:
                aux_pairs = ActivePairs.per_token(self._aux_indices(pre_BF, plan), self.cfg.d_sae)
                joined = pairs.join(aux_pairs)
        # One sparse encoder backward for the kept and the AuxK pairs together.
        encoded = pairs if joined is None else joined.pairs
        selected = selected_pre_acts(x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, encoded)
        values = (selected if joined is None else selected[joined.at_first]).relu()
        x_hat, extra = self._decode_kept(values, pairs, x_BD)
        aux = x_hat.new_zeros(())
        if joined is not None and aux_pairs is not None:
            e_hat = decode_pairs(selected[joined.at_second], self.W_dec, aux_pairs)
            aux = self._aux_loss(e_hat, x_BD, x_hat, plan.scale)
        return self._step_output(x_BD, x_hat, {**extra, "aux": aux}, sparse_feats=pairs.csr(values))

    def _decode_kept(
        self, values: Float[Tensor, " nnz"], pairs: ActivePairs, x_BD: Tensor
    ) -> tuple[Float[Tensor, "batch d_in"], dict[str, Tensor]]:
        """The fast step's reconstruction from the kept pairs, and any loss parts the decode
        adds (none here; Matryoshka's nested levels add one per inner prefix)."""
        return decode_pairs(values, self.W_dec, pairs) + self.b_dec, {}

    def _aux_plan(self) -> AuxPlan:
        """With fewer dead latents than aux_k, the loss is scaled by n_dead / aux_k (as in
        EleutherAI's sparsify): a handful of dead latents cannot explain the whole residual,
        and a full-weight loss would yank them around."""
        dead = self.dead_mask()
        n_dead = int(dead.sum()) if self.cfg.aux_coefficient > 0 else 0
        aux_k = self.cfg.resolved_aux_k
        return AuxPlan(dead, min(aux_k, n_dead), min(n_dead / aux_k, 1.0))

    @torch.no_grad()
    def _aux_indices(self, pre_BF: Tensor, plan: AuxPlan) -> Int[Tensor, "batch k_aux"]:
        """Each token's top ``k_aux`` dead latents, ascending."""
        dead_ids = plan.dead.nonzero().squeeze(1)
        local = pre_BF.index_select(1, dead_ids).topk(plan.k_aux, dim=-1, sorted=False).indices
        return dead_ids[local].sort(dim=-1).values

    def _aux_loss(self, e_hat_BD: Tensor, x_BD: Tensor, x_hat_BD: Tensor, scale: float) -> Tensor:
        # Dead latents learn to predict what the live ones missed (Gao et al. 2024, A.2);
        # the residual is a fixed target, and includes b_dec, so e_hat has no bias.
        residual = (x_BD - x_hat_BD).detach()
        return self.cfg.aux_coefficient * scale * (e_hat_BD - residual).pow(2).sum(-1).mean()

    def _extra_repr_fields(self) -> str:
        return f", k={self.cfg.k}"


class TrainableTopKSAE(TopKFamilySAE[TopKConfig]):
    """TopK + AuxK: every token keeps its k largest pre-activations (then ReLU)."""

    sae_lens_architecture: ClassVar[str] = "topk"

    def _activate(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        values, idx = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_BF).scatter(-1, idx, values.relu())

    def _select(self, pre_BF: Tensor) -> ActivePairs:
        # Sorted indices make each row a valid CSR pattern for the sparse kernels.
        idx = pre_BF.topk(self.cfg.k, dim=-1, sorted=False).indices.sort(dim=-1).values
        return ActivePairs.per_token(idx, self.cfg.d_sae)

    def _select_reference(self, pre_BF: Tensor) -> Float[Tensor, "batch d_sae"]:
        values, idx = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
        return pre_BF.new_zeros(pre_BF.shape, dtype=self.dtype).scatter(-1, idx, values.to(self.dtype).relu())

    def sae_lens_cfg_fields(self) -> dict[str, Any]:
        # Decoder rows are unit norm already: rescaling by their norms would change nothing.
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}


ARCHITECTURE = Architecture(
    name="topk",
    config=TopKConfig,
    sae=TrainableTopKSAE,
    calibration=Calibration(field="k", method="set_to_target"),
)
