"""Evaluate an SAE against its model: sparsity, reconstruction and downstream (CE / KL) metrics.

Works for any ``sae_lens.SAE`` (a pretrained release or one saelab trained and saved in
SAELens format) and a TransformerLens ``HookedTransformer``, on token batches the caller
provides: ``[batch, pos]`` token ids with BOS at position 0 (an attention mask is optional;
with one, the first attended token of each row is that row's BOS).

Definitions follow SAELens's ``sae_lens/evals.py`` wherever it computes the same number (tests
call SAELens on the same inputs and check that we agree):

* L0 counts features with a non-zero activation (``!= 0``, as SAELens; for ReLU, JumpReLU
  and TopK SAEs that is the same as ``> 0``).
* MSE is per-token squared error *summed over dimensions*, averaged over tokens.
* Explained variance is pooled over all tokens and measured around the mean activation
  (SAELens's ``ExplainedVarianceCalculator``, after its fix; not the legacy per-token ratio).
* CE-loss recovered is ``(zero - spliced) / (zero - clean)`` and KL is ``KL(clean || spliced)``
  per position, averaged.

BOS. From the middle layers on, SmolLM2's BOS residual has a norm near 25,000 against ~200
elsewhere (it is an attention sink), so a reconstruction spliced in there wrecks every later
position. With ``exclude_bos=True`` (the default, like SAELens's ``ignore_tokens``) BOS is
not spliced, its own prediction is not counted in any of the three runs, and it is left out
of the reconstruction and density metrics.

The zero-ablated run zeroes BOS too by default (``ablate_bos=True``), as SAELens does, so
CE-loss recovered agrees with SAELens's ``ce_loss_score``. It also makes the baseline clean:
at a ``hook_resid_pre`` of a model without biases (SmolLM2), zeroing every position leaves the
model nothing and the CE loss is exactly ``ln(d_vocab)``. ``ablate_bos=False`` zeroes only
the positions the splice replaces instead; that baseline is worse than uniform (the model
still sees BOS and predicts confidently from it: 14.1 nats against ln(49152) = 10.8 at layer
20 on a short sample), which raises CE-loss recovered for the same spliced loss.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract import encode_activations, hook_activations
from saelab.saes import check_compatible, hook_layer

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DENSE_THRESHOLD = 0.1
"""Features firing on more than 10% of tokens count as dense: too common to stand for one
specific concept. ``evaluate_sae(..., dense_threshold=...)`` changes it."""

DEFAULT_HISTOGRAM_BINS = 50

# Upper bound on the vocabulary-sized tensors one CE chunk holds at once (clean log-probs,
# spliced logits, their log-probs and the element-wise KL: four [rows, pos, d_vocab] fp32
# blocks). SmolLM2's 49,152-token vocabulary makes these the largest tensors by far.
DEFAULT_MAX_LOGIT_BYTES = 512 * 2**20
_LOGIT_BLOCKS = 4

# Below this per-token total variance the activations are constant; SAELens's convention.
_TINY_VARIANCE = 1e-10


class MissingBOSWarning(UserWarning):
    """Token rows were passed with ``exclude_bos=True`` but do not start with the BOS token."""


# ---------------------------------------------------------------------------------------
# Pure metrics on tensors.


def l0(feats: Float[Tensor, "*tokens d_sae"]) -> Float[Tensor, "*tokens"]:
    """Per-token L0: ``L0_t = #{f : feats[t, f] != 0}`` (float, so it averages cleanly)."""
    return (feats != 0).sum(dim=-1).to(torch.float32)


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
    return _explained_variance_from_sums(resid, total, x_ND.shape[0])


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


def _explained_variance_from_sums(resid_sum: float, total_sum: float, n: int) -> float:
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


# ---------------------------------------------------------------------------------------
# Streaming accumulators (exact: the result does not depend on how tokens are batched).


MASSIVE_NORM_RATIO = 5.0
"""A token whose activation norm exceeds this multiple of its batch's median norm counts as a
"massive activation" (Sun et al. 2024). SmolLM2-135M gives the first token after BOS one in
~5% of sequences (~0.04% of tokens) at 6-65x the median norm; each such token carries more
squared norm than thousands of ordinary ones, so a pooled explained variance over a few
thousand tokens mostly measures whether those few are reconstructed. Ordinary tokens stay
under ~3x the median, so the cut is far from both."""


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
        return _explained_variance_from_sums(self.sse, self.m2, self.n_tokens)

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


# ---------------------------------------------------------------------------------------
# Model-level: CE loss with the SAE spliced in, and with the activation zeroed.


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


class _BosPolicy(NamedTuple):
    exclude: bool
    """Leave BOS out of the splice, the counted predictions and the reconstruction metrics."""
    ablate: bool
    """Zero BOS in the zero-ablated run (whatever ``exclude`` says)."""


class _Positions(NamedTuple):
    kept: Bool[Tensor, "batch pos"]
    """Positions the SAE is applied to (spliced and measured): real tokens, minus BOS if excluded."""
    zeroed: Bool[Tensor, "batch pos"]
    """Positions the zero-ablated run zeroes: ``kept``, plus BOS when ``ablate_bos``."""
    predict: Bool[Tensor, "batch pos_minus_1"]
    """CE terms counted: the prediction made at position i of token i+1, both real, i kept."""


def ce_loss_metrics(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "batch pos"],
    *,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    exclude_bos: bool = True,
    ablate_bos: bool = True,
    max_logit_bytes: int = DEFAULT_MAX_LOGIT_BYTES,
) -> CELossMetrics:
    """CE loss of the clean, SAE-spliced and zero-ablated model on ``tokens``, and the KL between them.

    Three forward passes per chunk of rows (chunked so the vocabulary-sized tensors stay
    under ``max_logit_bytes``); at residual-stream hooks the spliced and zero-ablated passes
    start from the hook's layer. Only the kept positions (real tokens, minus BOS when
    ``exclude_bos``) are spliced, and only predictions made at kept positions count, the same
    ones in all three runs. The zero-ablated run zeroes the kept positions, and BOS as well
    when ``ablate_bos`` (SAELens's convention); see the module docstring.
    """
    hook = check_compatible(model, sae)
    stats = DownstreamStats()
    bos = _BosPolicy(exclude=exclude_bos, ablate=ablate_bos)
    _downstream_batch(model, sae, hook, tokens, attention_mask, bos, max_logit_bytes, stats, recon=None)
    return stats.result()



def _downstream_batch(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    tokens: Tensor,
    attention_mask: Tensor | None,
    bos: _BosPolicy,
    max_logit_bytes: int,
    stats: DownstreamStats,
    recon: ReconstructionStats | None,
) -> None:
    tokens, attention_mask = _validate_tokens(tokens, attention_mask)
    positions = _positions(tokens, attention_mask, bos)
    _warn_if_no_bos(model, tokens, attention_mask, bos.exclude)
    rows = max(1, max_logit_bytes // (_LOGIT_BLOCKS * tokens.shape[1] * model.cfg.d_vocab * 4))
    for start in range(0, tokens.shape[0], rows):
        part = slice(start, start + rows)
        _downstream_chunk(
            model,
            sae,
            hook,
            tokens[part],
            attention_mask[part] if attention_mask is not None else None,
            _Positions(*(mask[part] for mask in positions)),
            stats,
            recon,
        )


def _downstream_chunk(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    tokens: Tensor,
    attention_mask: Tensor | None,
    positions: _Positions,
    stats: DownstreamStats,
    recon: ReconstructionStats | None,
) -> None:
    device = model.cfg.device
    tokens = tokens.to(device)
    kept, zeroed, predict = (mask.to(device) for mask in positions)
    kwargs: dict[str, Any] = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(device)
    splice, zero_out = _splice_hook(sae, kept, recon), _zero_hook(zeroed)
    with torch.inference_mode():
        runs = _patched_runs(model, hook, tokens, kwargs, splice, zero_out)
        logp_clean = F.log_softmax(next(runs).float(), dim=-1)
        clean = _next_token_nll(logp_clean, tokens)
        logp_spliced = F.log_softmax(next(runs).float(), dim=-1)
        spliced = _next_token_nll(logp_spliced, tokens)
        kl = F.kl_div(logp_spliced, logp_clean, log_target=True, reduction="none").sum(dim=-1)
        del logp_clean, logp_spliced
        zero = _next_token_nll(F.log_softmax(next(runs).float(), dim=-1), tokens)
    stats.n_predictions += int(predict.sum())
    stats.n_kl_positions += int(kept.sum())
    stats.clean_sum += float(clean[predict].double().sum())
    stats.spliced_sum += float(spliced[predict].double().sum())
    stats.zero_sum += float(zero[predict].double().sum())
    stats.kl_sum += float(kl[kept].double().sum())


def _patched_runs(
    model: HookedTransformer,
    hook: str,
    tokens: Tensor,
    kwargs: dict[str, Any],
    splice: Callable[..., Tensor],
    zero_out: Callable[..., Tensor],
) -> Iterator[Float[Tensor, "batch pos vocab"]]:
    """Logits of the clean, spliced and zero-ablated runs, one at a time (bounded memory).

    At a residual-stream hook the activation is the whole state of the forward pass, so the
    patched runs resume from it (``start_at_layer``) instead of recomputing the layers below
    the hook: at layer 20 of 30 that saves ~45% of the work. Other hooks patch a full run.
    """
    resume = _resume_layer(hook)
    if resume is None:
        yield model(tokens, **kwargs)
        yield model.run_with_hooks(tokens, fwd_hooks=[(hook, splice)], **kwargs)
        yield model.run_with_hooks(tokens, fwd_hooks=[(hook, zero_out)], **kwargs)
        return
    store: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> None:  # noqa: ARG001
        store["act"] = act.clone()

    yield model.run_with_hooks(tokens, fwd_hooks=[(hook, grab)], **kwargs)
    act = store.pop("act")
    yield model(splice(act, None), start_at_layer=resume, **kwargs)
    yield model(zero_out(act, None), start_at_layer=resume, **kwargs)


def _resume_layer(hook: str) -> int | None:
    """The ``start_at_layer`` whose input is the activation at ``hook`` (None: not a residual hook)."""
    layer = hook_layer(hook)
    if layer is None:
        return None
    if hook.endswith("hook_resid_pre"):
        return layer
    if hook.endswith("hook_resid_post"):
        return layer + 1
    return None


def _next_token_nll(
    logp: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """``-log p(token_{i+1} | tokens_{<=i})`` for each position i but the last."""
    return -logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def _sae_reconstruct(sae: SAE, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(feats, x_hat)`` for activations in the model's layout; x_hat back on x's device/dtype."""
    feats = encode_activations(sae, x)
    x_hat = sae.decode(feats).to(device=x.device, dtype=x.dtype)
    return feats, x_hat


def _splice_hook(sae: SAE, kept: Tensor, recon: ReconstructionStats | None) -> Callable[..., Tensor]:
    """Replace the activation with the SAE's reconstruction at kept positions (others untouched).

    When ``recon`` is given, the reconstruction metrics are taken from this same pass, which
    saves the separate forward pass to the hook.
    """

    def hook_fn(act: Tensor, hook: Any) -> Tensor:  # noqa: ARG001 (TransformerLens HookPoint)
        feats, x_hat = _sae_reconstruct(sae, act)
        if recon is not None:
            _add_recon(recon, act, feats, x_hat, kept)
        keep = kept.reshape(*kept.shape, *([1] * (act.ndim - 2)))
        return torch.where(keep, x_hat, act)

    return hook_fn


def _zero_hook(zeroed: Tensor) -> Callable[..., Tensor]:
    def hook_fn(act: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        zero = zeroed.reshape(*zeroed.shape, *([1] * (act.ndim - 2)))
        return torch.where(zero, torch.zeros_like(act), act)

    return hook_fn


def _add_recon(recon: ReconstructionStats, x: Tensor, feats: Tensor, x_hat: Tensor, kept: Tensor) -> None:
    # Per-head hooks (hook_z) are [batch, pos, heads, d_head]; metrics see one flat vector per token.
    mask = kept.to(x.device)
    recon.add(
        x.reshape(*x.shape[:2], -1)[mask].float(),
        feats.reshape(*feats.shape[:2], -1)[mask.to(feats.device)],
        x_hat.reshape(*x_hat.shape[:2], -1)[mask].float(),
    )


def _positions(tokens: Tensor, attention_mask: Tensor | None, bos: _BosPolicy) -> _Positions:
    real = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    kept = real.clone()
    if bos.exclude:
        # The first real token of each row is its BOS (position 0 without padding; later with left padding).
        first = real.to(torch.int8).argmax(dim=1)
        kept[torch.arange(tokens.shape[0]), first] = False
    return _Positions(kept=kept, zeroed=real if bos.ablate else kept, predict=kept[:, :-1] & real[:, 1:])


def _warn_if_no_bos(model: HookedTransformer, tokens: Tensor, attention_mask: Tensor | None, exclude_bos: bool) -> None:
    bos = getattr(model.tokenizer, "bos_token_id", None) if model.tokenizer is not None else None
    if not exclude_bos or bos is None:
        return
    real = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    first = tokens[torch.arange(tokens.shape[0]), real.to(torch.int8).argmax(dim=1)]
    if (first != bos).any():
        warnings.warn(
            f"exclude_bos=True, but {int((first != bos).sum())} of {tokens.shape[0]} rows do not start "
            f"with BOS (id {bos}); their first token is excluded anyway. Prepend BOS when tokenizing "
            "so the model sees what it was trained on.",
            MissingBOSWarning,
            stacklevel=4,
        )


def _validate_tokens(tokens: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if not isinstance(tokens, Tensor) or tokens.ndim != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a [batch, pos] tensor of token ids, got {shape}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.shape[0] == 0 or tokens.shape[1] < 2:
        raise ValueError(f"tokens need at least one row and two positions, got shape {tuple(tokens.shape)}")
    if attention_mask is not None and attention_mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match tokens {tuple(tokens.shape)}"
        )
    return tokens.long(), attention_mask


# ---------------------------------------------------------------------------------------
# The harness: stream over token batches.


@dataclass(frozen=True)
class EvalResult:
    """Every number saelab reports for one SAE on one set of tokens.

    Reconstruction and density metrics cover the kept tokens (real, minus BOS when excluded);
    CE metrics cover the next-token predictions made at those tokens. CE fields are NaN when
    ``evaluate_sae(..., compute_ce=False)``.
    """

    hook: str
    d_sae: int
    exclude_bos: bool
    ablate_bos: bool
    """Whether the zero-ablated run also zeroed BOS (SAELens's convention)."""
    n_tokens: int
    """Tokens the reconstruction and density metrics average over."""
    n_predictions: int
    """Next-token predictions the CE losses average over (0 without CE)."""
    l0: float
    """Mean number of active features per token."""
    explained_variance: float
    """Pooled, around the mean; see :func:`explained_variance`."""
    mse: float
    """Mean over tokens of ||x - x̂||² (summed over dimensions); see :func:`mse`."""
    ce_loss_clean: float
    ce_loss_spliced: float
    ce_loss_zero: float
    ce_loss_recovered: float
    """``(zero - spliced) / (zero - clean)``."""
    kl_div: float
    """Mean KL(clean || spliced) per position."""
    dead_fraction: float
    """Features that never fired on these tokens."""
    dense_fraction: float
    """Features with density above ``dense_threshold``."""
    dense_threshold: float
    density: Float[Tensor, " d_sae"] = field(repr=False)
    """Per-feature fraction of tokens with a non-zero activation."""
    histogram: DensityHistogram = field(repr=False)
    explained_variance_typical: float = float("nan")
    """Explained variance over the tokens that are not massive activations
    (:data:`MASSIVE_NORM_RATIO`); ``explained_variance`` counts every kept token, as SAELens does."""
    n_massive: int = 0
    """Kept tokens whose norm marks them as massive activations."""

    @property
    def fvu(self) -> float:
        """Fraction of variance unexplained, ``1 - explained_variance``."""
        return 1.0 - self.explained_variance

    def to_dict(self) -> dict[str, Any]:
        """The scalar metrics (everything but the density vector and histogram), in a fixed order."""
        return {name: getattr(self, name) for name in _SCALAR_FIELDS}

    def to_frame(self, name: str | None = None) -> pd.DataFrame:
        """A one-row DataFrame of :meth:`to_dict`, indexed by ``name`` (default: the hook)."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()], index=pd.Index([name or self.hook], name="sae"))


_SCALAR_FIELDS = (
    "hook", "d_sae", "l0", "explained_variance", "explained_variance_typical", "n_massive", "fvu", "mse",
    "ce_loss_clean", "ce_loss_spliced", "ce_loss_zero", "ce_loss_recovered", "kl_div",
    "dead_fraction", "dense_fraction", "dense_threshold",
    "n_tokens", "n_predictions", "exclude_bos", "ablate_bos",
)  # fmt: skip


def compare(results: Mapping[str, EvalResult]) -> pd.DataFrame:
    """One row per SAE (indexed by the mapping's keys), one column per metric.

    Put SAEs with similar ``l0`` side by side: explained variance and CE-loss recovered only
    compare fairly at matched sparsity.
    """
    import pandas as pd

    if not results:
        raise ValueError("compare needs at least one result, e.g. {'pretrained': r1, 'saelab': r2}")
    return pd.concat([result.to_frame(name) for name, result in results.items()])


TokenBatch = Int[Tensor, "batch pos"] | tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]


def evaluate_sae(
    model: HookedTransformer,
    sae: SAE,
    token_batches: Iterable[TokenBatch] | Int[Tensor, "n_seq pos"],
    *,
    max_batches: int | None = None,
    progress: bool = True,
    exclude_bos: bool = True,
    ablate_bos: bool = True,
    compute_ce: bool = True,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
    histogram_bins: int | Float[Tensor, " n_edges"] = DEFAULT_HISTOGRAM_BINS,
    batch_size: int = 8,
    max_logit_bytes: int = DEFAULT_MAX_LOGIT_BYTES,
) -> EvalResult:
    """Evaluate ``sae`` on its model over a stream of token batches.

    ``token_batches`` yields ``[batch, pos]`` token tensors (BOS at position 0) or
    ``(tokens, attention_mask)`` pairs; a single ``[n_seq, pos]`` tensor is split into
    batches of ``batch_size`` rows. Memory stays bounded by one batch (and by
    ``max_logit_bytes`` for the logits). With ``compute_ce`` the reconstruction metrics are
    read inside the spliced forward pass (three passes per batch); without it, from a pass
    that stops at the hook (:func:`saelab.extract.hook_activations`). ``exclude_bos`` and
    ``ablate_bos`` are as in :func:`ce_loss_metrics`.
    """
    hook = check_compatible(model, sae)
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches}")
    # islice, not a break inside the loop: a store's iterator must not lose one more batch.
    batches = itertools.islice(_iter_token_batches(token_batches, batch_size), max_batches)
    sizes = [n for n in (max_batches, _len_or_none(token_batches, batch_size)) if n is not None]
    total = min(sizes) if sizes else None
    recon = ReconstructionStats(d_sae=sae.cfg.d_sae)
    down = DownstreamStats()
    bos = _BosPolicy(exclude=exclude_bos, ablate=ablate_bos)
    bar = tqdm(batches, total=total, desc=f"eval @ {hook}", disable=not progress, leave=False)
    for tokens, mask in bar:
        if compute_ce:
            _downstream_batch(model, sae, hook, tokens, mask, bos, max_logit_bytes, down, recon)
        else:
            _reconstruction_batch(model, sae, hook, tokens, mask, bos, recon)
        if recon.n_tokens:
            bar.set_postfix(_live_postfix(recon, down), refresh=False)
    bar.close()
    if recon.n_tokens == 0:
        raise ValueError("No tokens were evaluated: token_batches was empty (or every token was excluded).")
    return _build_result(hook, sae, bos, recon, down if compute_ce else None, dense_threshold, histogram_bins)


def _reconstruction_batch(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    tokens: Tensor,
    attention_mask: Tensor | None,
    bos: _BosPolicy,
    recon: ReconstructionStats,
) -> None:
    tokens, attention_mask = _validate_tokens(tokens, attention_mask)
    mask = attention_mask if attention_mask is not None else torch.ones_like(tokens)
    positions = _positions(tokens, attention_mask, bos)
    _warn_if_no_bos(model, tokens, attention_mask, bos.exclude)
    acts = hook_activations(model, hook, tokens, mask)
    with torch.inference_mode():
        feats, x_hat = _sae_reconstruct(sae, acts)
        _add_recon(recon, acts, feats, x_hat, positions.kept)


def _build_result(
    hook: str,
    sae: SAE,
    bos: _BosPolicy,
    recon: ReconstructionStats,
    down: DownstreamStats | None,
    dense_threshold: float,
    histogram_bins: int | Tensor,
) -> EvalResult:
    density = feature_density(recon.fired, recon.n_tokens)
    ce = down.result() if down is not None else None
    nan = float("nan")
    return EvalResult(
        hook=hook,
        d_sae=sae.cfg.d_sae,
        exclude_bos=bos.exclude,
        ablate_bos=bos.ablate,
        n_tokens=recon.n_tokens,
        n_predictions=ce.n_predictions if ce else 0,
        l0=recon.l0,
        explained_variance=recon.explained_variance,
        mse=recon.mse,
        ce_loss_clean=ce.ce_loss_clean if ce else nan,
        ce_loss_spliced=ce.ce_loss_spliced if ce else nan,
        ce_loss_zero=ce.ce_loss_zero if ce else nan,
        ce_loss_recovered=ce.ce_loss_recovered if ce else nan,
        kl_div=ce.kl_div if ce else nan,
        dead_fraction=dead_fraction(recon.fired, recon.n_tokens),
        dense_fraction=dense_fraction(density, dense_threshold),
        dense_threshold=dense_threshold,
        density=density,
        histogram=density_histogram(density, histogram_bins),
        explained_variance_typical=recon.explained_variance_typical,
        n_massive=recon.n_massive,
    )


def _live_postfix(recon: ReconstructionStats, down: DownstreamStats) -> dict[str, str]:
    shown = {"L0": f"{recon.l0:.1f}", "EV": f"{recon.explained_variance:.3f}"}
    if down.n_predictions:
        shown["CE rec"] = f"{down.result().ce_loss_recovered:.3f}"
    return shown


def _iter_token_batches(
    token_batches: Iterable[TokenBatch] | Tensor, batch_size: int
) -> Iterator[tuple[Tensor, Tensor | None]]:
    if isinstance(token_batches, Tensor):
        if token_batches.ndim != 2:
            raise ValueError(f"a single token tensor must be [n_seq, pos], got shape {tuple(token_batches.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        for start in range(0, token_batches.shape[0], batch_size):
            yield token_batches[start : start + batch_size], None
        return
    for item in token_batches:
        if isinstance(item, Tensor):
            yield item, None
        elif isinstance(item, tuple | list) and len(item) == 2:
            yield item[0], item[1]
        else:
            raise TypeError(
                "each token batch must be a [batch, pos] tensor or a (tokens, attention_mask) pair, "
                f"got {type(item).__name__}"
            )


def _len_or_none(token_batches: Any, batch_size: int) -> int | None:
    if isinstance(token_batches, Tensor):
        return -(-token_batches.shape[0] // batch_size)
    try:
        return len(token_batches)
    except TypeError:
        return None
