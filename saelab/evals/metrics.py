"""Metrics of an SAE's reconstruction and sparsity, on tensors.

Definitions follow SAELens's ``sae_lens/evals.py`` wherever it computes the same number (tests
call SAELens on the same inputs and check that we agree):

* L0 counts features with a non-zero activation (``!= 0``, as SAELens; for ReLU, JumpReLU
  and TopK SAEs that is the same as ``> 0``).
* MSE is per-token squared error *summed over dimensions*, averaged over tokens.
* Explained variance is pooled over all tokens and measured around the mean activation
  (SAELens's ``ExplainedVarianceCalculator``, after its fix; not the legacy per-token ratio).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from saelab.evals.harness import EvalResult

DEFAULT_DENSE_THRESHOLD = 0.1
"""Features firing on more than 10% of tokens count as dense: too common to stand for one
specific concept. ``evaluate_sae(..., dense_threshold=...)`` changes it."""

DEFAULT_HISTOGRAM_BINS = 50

# Below this per-token total variance the activations are constant; SAELens's convention.
_TINY_VARIANCE = 1e-10


def l0(acts: Float[Tensor, "*tokens d_sae"]) -> Float[Tensor, "*tokens"]:
    """Per-token L0: ``L0_t = #{f : acts[t, f] != 0}`` (float, so it averages cleanly)."""
    return (acts != 0).sum(dim=-1).to(torch.float32)


def mse(x: Float[Tensor, "*tokens d"], x_hat: Float[Tensor, "*tokens d"]) -> float:
    """Mean over tokens of the squared error summed over dimensions: ``(1/N) sum_t ||x_t - x̂_t||²``.

    This is SAELens's eval ``mse`` (and its training L2 loss). Divide by ``d`` for the
    per-element mean squared error.
    """
    x_ND, x_hat_ND = _as_rows(x, x_hat)
    return float((x_ND - x_hat_ND).pow(2).sum(dim=-1).mean())


def explained_variance(x: Float[Tensor, "*tokens d"], x_hat: Float[Tensor, "*tokens d"]) -> float:
    """Share of the activations' variance around their mean that the reconstruction explains.

    ``EV = 1 - sum_t ||x_t - x̂_t||² / sum_t ||x_t - x̄||²`` with ``x̄ = (1/N) sum_t x_t``,
    pooled over all N tokens (one ratio of sums, not a mean of per-token ratios) and summed
    over dimensions; computed in float64. This is SAELens's definition since its fix
    (``ExplainedVarianceCalculator`` in evals, ``metrics/explained_variance`` in training):
    total variance is measured around the batch mean, not around zero. Constant activations
    (per-token variance < 1e-10) give 1.0 if reconstructed exactly, else 0.0, as in SAELens.
    """
    x_ND, x_hat_ND = _as_rows(x, x_hat)
    x64, x_hat64 = x_ND.double(), x_hat_ND.double()
    total = float((x64 - x64.mean(dim=0)).pow(2).sum())
    resid = float((x64 - x_hat64).pow(2).sum())
    return explained_variance_from_sums(resid, total, x_ND.shape[0])


def fvu(x: Float[Tensor, "*tokens d"], x_hat: Float[Tensor, "*tokens d"]) -> float:
    """Fraction of variance unexplained: ``1 - explained_variance(x, x_hat)``."""
    return 1.0 - explained_variance(x, x_hat)


def feature_density(fired_counts: Int[Tensor, " d_sae"], n_tokens: int) -> Float[Tensor, " d_sae"]:
    """Fraction of tokens on which each feature fires: ``density_f = count_f / n_tokens``."""
    _check_counts(fired_counts, n_tokens)
    return fired_counts.to(torch.float64).div(n_tokens).to(torch.float32)


def dead_fraction(fired_counts: Int[Tensor, " d_sae"], n_tokens: int) -> float:
    """Share of features that never fired on the ``n_tokens`` tokens seen: ``#{f : count_f = 0} / d_sae``.

    "Dead" is relative to the sample: a rare feature looks dead on too few tokens.
    """
    _check_counts(fired_counts, n_tokens)
    return float((fired_counts == 0).to(torch.float64).mean())


def dense_fraction(density: Float[Tensor, " d_sae"], threshold: float = DEFAULT_DENSE_THRESHOLD) -> float:
    """Share of features whose density exceeds ``threshold``: ``#{f : density_f > threshold} / d_sae``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of tokens and must lie in [0, 1], got {threshold}")
    return float((density > threshold).to(torch.float64).mean())


class DensityHistogram(NamedTuple):
    """Histogram of log10 feature density; dead features are counted apart, not as -inf."""

    log10_edges: Float[Tensor, " n_edges"]
    """Bin edges in log10(density); bins are ``[e_i, e_{i+1})``, the last one closed."""
    counts: Int[Tensor, " n_bins"]
    """Live features per bin."""
    n_dead: int
    """Features with density 0 (log10 would be -inf)."""
    n_outside: int
    """Live features outside the edges (only possible with caller-given edges)."""


def density_histogram(
    density: Float[Tensor, " d_sae"], bins: int | Float[Tensor, " n_edges"] = DEFAULT_HISTOGRAM_BINS
) -> DensityHistogram:
    """Histogram of ``log10(density)`` over live features, with dead ones counted separately.

    ``bins`` is a number of equal-width bins spanning ``[min(floor(log10(min live density)), -1), 0]``,
    or explicit log10 edges (pass the same edges to compare two SAEs bin by bin). Then
    ``counts.sum() + n_outside + n_dead == d_sae``.
    """
    if density.ndim != 1:
        raise ValueError(f"density must be 1-D [d_sae], got shape {tuple(density.shape)}")
    if (density < 0).any() or (density > 1).any():
        raise ValueError("density values are fractions of tokens and must lie in [0, 1]")
    live = density[density > 0].double().cpu()
    log_live = live.log10()
    if isinstance(bins, int):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of bins or a 1-D tensor of edges, got {bins}")
        # At least one decade, so that all-dense (or all-dead) SAEs still get a usable axis.
        low = min(math.floor(float(log_live.min())), -1) if live.numel() else -1
        edges = torch.linspace(float(low), 0.0, bins + 1, dtype=torch.float64)
    else:
        edges = torch.as_tensor(bins, dtype=torch.float64).cpu()
        if edges.ndim != 1 or edges.numel() < 2 or not (edges[1:] > edges[:-1]).all():
            raise ValueError("bins given as edges must be a 1-D increasing tensor with at least 2 entries")
    counts = torch.histogram(log_live, bins=edges).hist.to(torch.long)
    inside = int(counts.sum())
    return DensityHistogram(
        log10_edges=edges.float(),
        counts=counts,
        n_dead=int((density == 0).sum()),
        n_outside=int(live.numel()) - inside,
    )


def shared_density_histograms(
    results: Mapping[str, EvalResult], bins: int = DEFAULT_HISTOGRAM_BINS
) -> dict[str, DensityHistogram]:
    """Density histograms of several evaluations on one set of log10 edges (spanning the
    rarest live feature of any of them), so they can be overlaid and compared bin by bin."""
    if not results:
        raise ValueError("results is empty; pass {name: EvalResult}")
    live = [r.density[r.density > 0].min() for r in results.values() if (r.density > 0).any()]
    low = min(math.floor(math.log10(float(min(live)))), -1) if live else -1
    edges = torch.linspace(float(low), 0.0, bins + 1, dtype=torch.float64)
    return {name: density_histogram(r.density, bins=edges) for name, r in results.items()}


def explained_variance_from_sums(resid_sum: float, total_sum: float, n: int) -> float:
    if n == 0:
        raise ValueError("explained variance needs at least one token")
    if total_sum / n < _TINY_VARIANCE:
        return 1.0 if resid_sum / n < _TINY_VARIANCE else 0.0
    return 1.0 - resid_sum / total_sum


def _as_rows(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty [..., d] tensor, got shape {tuple(x.shape)}")
    return x.reshape(-1, x.shape[-1]), x_hat.reshape(-1, x.shape[-1])


def _check_counts(fired_counts: Tensor, n_tokens: int) -> None:
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive (no tokens seen, so no feature can be judged), got {n_tokens}")
    if fired_counts.ndim != 1:
        raise ValueError(f"fired_counts must be 1-D [d_sae], got shape {tuple(fired_counts.shape)}")
    if (fired_counts < 0).any() or (fired_counts > n_tokens).any():
        raise ValueError(f"fired_counts must lie in [0, n_tokens={n_tokens}]")
