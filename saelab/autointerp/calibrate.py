"""What the examples pass must know before it starts: when each direction fires, which way
it points, and which features are its neighbours (for hard negatives).

Measured on a few chunks spread over the source (not just the first, which may hold one
kind of text), with the same rule for every decomposition:
- an SAE feature fires above 0; a dense direction above its ``1 - dense_rate`` quantile;
- a dense direction's sign is flipped so its heavier tail is positive (PCA, ICA and random
  directions have no natural sign; a neuron's positive side is kept only if it is the
  heavier one), so "top activating" means its most distinctive side;
- neighbours are the features that fire in the same windows most often (Jaccard) plus, for
  decompositions with write-out directions, the most decoder-similar ones.

Suffixes: ``T`` tokens, ``N`` windows, ``F`` all features, ``S`` the selected features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from saelab.autointerp.decompositions import Decomposition

_QUANTILE_ROWS = 16_384  # torch.quantile's input limit is 2**24 elements; subsample tokens beyond this


@dataclass
class Calibration:
    threshold_F: Float[Tensor, " F"]
    sign_F: Float[Tensor, " F"]
    """+1 or -1 per feature, applied to its activations before anything else."""
    scale_F: Float[Tensor, " F"]
    """Peak activation in the calibration windows (to compare neighbours on one scale)."""
    neighbours_SM: Int[Tensor, "S M"]
    """For each selected feature, the indices (among all features) of its neighbours."""

    def state(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold_F, "sign": self.sign_F, "scale": self.scale_F,
                "neighbours": self.neighbours_SM}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device) -> Calibration:
        return cls(state["threshold"].to(device), state["sign"].to(device), state["scale"].to(device),
                   state["neighbours"].to(device))  # fmt: skip


def signs(decomposition: Decomposition, acts_TF: Float[Tensor, "T F"]) -> Float[Tensor, " F"]:
    """+1 for every SAE feature; for a dense direction, the sign that makes its heavier tail positive."""
    if decomposition.sparse:
        return torch.ones(acts_TF.shape[1], device=acts_TF.device)
    centred = acts_TF - acts_TF.mean(dim=0)
    return torch.where((centred**3).mean(dim=0) < 0, -1.0, 1.0).to(acts_TF.dtype)


def calibrate(
    decomposition: Decomposition,
    sign_F: Float[Tensor, " F"],
    acts_TF: Float[Tensor, "T F"],
    window_max_NF: Float[Tensor, "N F"],
    selected: Int[Tensor, " S"],
    *,
    dense_rate: float,
    n_neighbours: int,
    seed: int = 0,
) -> Calibration:
    """Thresholds and neighbours from calibration tokens ``acts_TF`` (valid positions only)
    and the windows' peaks ``window_max_NF``, both already multiplied by ``sign_F``."""
    if decomposition.sparse:
        threshold = torch.zeros(acts_TF.shape[1], device=acts_TF.device)
    else:
        threshold = _quantile_rows(acts_TF, 1.0 - dense_rate, seed)
    peaks = window_max_NF
    fires = peaks > threshold
    scale = peaks.max(dim=0).values.clamp_min(1e-6)
    neighbours = _cooccurring(fires, selected, n_neighbours)
    if n_neighbours and (decomposition.sparse or decomposition.directions is not None):
        neighbours = torch.cat(
            [neighbours, _decoder_similar(decomposition, selected, n_neighbours, acts_TF.device)], dim=1
        )
    return Calibration(threshold, sign_F, scale, neighbours)


def _quantile_rows(acts_TF: Float[Tensor, "T F"], q: float, seed: int) -> Float[Tensor, " F"]:
    if acts_TF.shape[0] > _QUANTILE_ROWS:
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randperm(acts_TF.shape[0], generator=gen)[:_QUANTILE_ROWS].to(acts_TF.device)
        acts_TF = acts_TF[rows]
    out = [torch.quantile(block, q, dim=0) for block in acts_TF.split(1024, dim=1)]
    return torch.cat(out)


def _cooccurring(fires_NF: Bool[Tensor, "N F"], selected: Int[Tensor, " S"], m: int) -> Int[Tensor, "S m"]:
    if m == 0:
        return torch.empty((len(selected), 0), dtype=torch.long, device=fires_NF.device)
    f = fires_NF.float()
    both = f[:, selected].T @ f  # [S, F] windows where both fire
    count = f.sum(dim=0)
    union = count[selected][:, None] + count[None, :] - both
    jaccard = torch.where(union > 0, both / union.clamp_min(1), 0.0)
    jaccard[torch.arange(len(selected)), selected] = -1.0  # never one's own neighbour
    return jaccard.topk(min(m, f.shape[1] - 1), dim=1).indices


def _decoder_similar(decomposition: Decomposition, selected: Tensor, m: int, device: torch.device) -> Tensor:
    directions = decomposition.write_directions().to(device).float()
    unit = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (unit[selected] @ unit.T).abs()
    cos[torch.arange(len(selected)), selected] = -1.0
    return cos.topk(min(m, unit.shape[0] - 1), dim=1).indices
