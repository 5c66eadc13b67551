"""Streaming accumulators: exact running sums, so a metric does not depend on how tokens
are batched, and memory stays bounded by one batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from saelab.evals.metrics import explained_variance_from_sums

MASSIVE_NORM_RATIO = 5.0
"""A token whose activation norm exceeds this multiple of its batch's median norm counts as a
"massive activation" (Sun et al. 2024). SmolLM2-135M gives the first token after BOS one in
a few percent of sequences, far above this cut, while ordinary tokens stay well below it (the
docs/profiles.md ("The bundled SAE suite") and ``data/README.md`` give the measured shares and ratios).
Each such token carries more squared norm than thousands of ordinary ones, so a pooled
explained variance over a few thousand tokens mostly measures whether those few are
reconstructed."""


@dataclass
class ReconstructionStats:
    """Running sums for L0, MSE, explained variance and feature density over token rows.

    The variance around the mean is merged batch by batch with Chan et al.'s pairwise update
    (float64), which avoids the cancellation of ``E||x||² - ||E x||²`` when activations have a
    large common component. ``typical`` keeps the same sums over the rows that are not
    massive activations (see :data:`MASSIVE_NORM_RATIO`).
    """

    d_sae: int
    track_typical: bool = True
    n_tokens: int = 0
    sse: float = 0.0
    """sum_t ||x_t - x̂_t||²."""
    m2: float = 0.0
    """sum_t ||x_t - x̄||² over the tokens seen so far."""
    l0_sum: float = 0.0
    mean: Tensor | None = None
    fired: Tensor = field(init=False)

    typical: ReconstructionStats | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fired = torch.zeros(self.d_sae, dtype=torch.long)
        self.typical = ReconstructionStats(self.d_sae, track_typical=False) if self.track_typical else None

    def add(
        self, x_ND: Float[Tensor, "n d"], feats_NF: Float[Tensor, "n d_sae"], x_hat_ND: Float[Tensor, "n d"]
    ) -> None:
        n_b = x_ND.shape[0]
        if n_b == 0:
            return
        if self.typical is not None:
            norms = x_ND.float().norm(dim=-1)
            ordinary = norms <= MASSIVE_NORM_RATIO * norms.median()
            self.typical.add(x_ND[ordinary], feats_NF[ordinary], x_hat_ND[ordinary])
        x64 = x_ND.double()
        mean_b = x64.mean(dim=0)
        m2_b = float((x64 - mean_b).pow(2).sum())
        self.sse += float((x64 - x_hat_ND.double()).pow(2).sum())
        active = feats_NF != 0
        self.l0_sum += float(active.sum())
        self.fired += active.sum(dim=0).cpu()
        if self.mean is None:
            self.mean, self.m2 = mean_b, m2_b
        else:
            n_a, n = self.n_tokens, self.n_tokens + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 += m2_b + float(delta.pow(2).sum()) * n_a * n_b / n
        self.n_tokens += n_b

    @property
    def l0(self) -> float:
        return self.l0_sum / self.n_tokens

    @property
    def mse(self) -> float:
        return self.sse / self.n_tokens

    @property
    def explained_variance(self) -> float:
        return explained_variance_from_sums(self.sse, self.m2, self.n_tokens)

    @property
    def n_massive(self) -> int:
        """Rows left out of ``typical`` (0 when it is not tracked)."""
        return self.n_tokens - self.typical.n_tokens if self.typical is not None else 0

    @property
    def explained_variance_typical(self) -> float:
        """Explained variance over the rows that are not massive activations; NaN when not
        tracked or when every row was one."""
        if self.typical is None or self.typical.n_tokens == 0:
            return float("nan")
        return self.typical.explained_variance


@dataclass
class DownstreamStats:
    """Running sums of per-position CE losses and KL (token-weighted means across batches)."""

    n_predictions: int = 0
    n_kl_positions: int = 0
    clean_sum: float = 0.0
    spliced_sum: float = 0.0
    zero_sum: float = 0.0
    kl_sum: float = 0.0

    def result(self) -> CELossMetrics:
        if self.n_predictions == 0:
            raise ValueError("No next-token predictions were counted (sequences too short after excluding BOS).")
        n = self.n_predictions
        return CELossMetrics(
            ce_loss_clean=self.clean_sum / n,
            ce_loss_spliced=self.spliced_sum / n,
            ce_loss_zero=self.zero_sum / n,
            kl_div=self.kl_sum / self.n_kl_positions,
            n_predictions=n,
            n_kl_positions=self.n_kl_positions,
        )


class CELossMetrics(NamedTuple):
    """Next-token CE loss of the clean, SAE-spliced and zero-ablated model, and KL(clean || spliced)."""

    ce_loss_clean: float
    """Mean CE loss (nats) of the unmodified model."""
    ce_loss_spliced: float
    """Mean CE loss with the activation at the SAE's hook replaced by ``decode(encode(x))``."""
    ce_loss_zero: float
    """Mean CE loss with the activation at the hook replaced by zeros."""
    kl_div: float
    """Mean over positions of ``sum_v p_clean(v) (log p_clean(v) - log p_spliced(v))``."""
    n_predictions: int
    """Next-token predictions averaged in the CE losses."""
    n_kl_positions: int
    """Positions averaged in the KL (these include each row's last position, as SAELens)."""

    @property
    def ce_loss_recovered(self) -> float:
        """``(zero - spliced) / (zero - clean)``: 1 = the SAE loses nothing, 0 = as bad as zeroing."""
        return (self.ce_loss_zero - self.ce_loss_spliced) / (self.ce_loss_zero - self.ce_loss_clean)
