"""The evaluation harness: stream token batches through the model with the SAE spliced in,
and report every number in one :class:`EvalResult`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.evals.accumulators import DownstreamStats, ReconstructionStats
from saelab.evals.ce_loss import (
    DEFAULT_MAX_LOGIT_BYTES,
    BosPolicy,
    CheckedTokens,
    Spliced,
    add_recon,
    checked_tokens,
    downstream_batch,
    sae_reconstruct,
)
from saelab.evals.metrics import (
    DEFAULT_DENSE_THRESHOLD,
    DEFAULT_HISTOGRAM_BINS,
    DensityHistogram,
    dead_fraction,
    dense_fraction,
    density_histogram,
    feature_density,
)
from saelab.extract.hooks import hook_activations
from saelab.saes import check_compatible, sae_hook_name

if TYPE_CHECKING:
    import pandas as pd

_NOT_A_SCALAR = {"scalar": False}


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """Every number saelab reports for one SAE on one set of tokens.

    Reconstruction and density metrics cover the kept tokens (real, minus BOS when excluded);
    CE metrics cover the next-token predictions made at those tokens. CE fields are NaN when
    ``evaluate_sae(..., compute_ce=False)``. Fields are in the order :meth:`to_dict` lists them.
    """

    hook: str
    d_sae: int
    l0: float
    """Mean number of active features per token."""
    explained_variance: float
    """Pooled, around the mean; see :func:`saelab.evals.metrics.explained_variance`."""
    explained_variance_typical: float = float("nan")
    """Explained variance over the tokens that are not massive activations
    (:data:`~saelab.evals.accumulators.MASSIVE_NORM_RATIO`); ``explained_variance`` counts
    every kept token, as SAELens does."""
    n_massive: int = 0
    """Kept tokens whose norm marks them as massive activations."""
    fvu: float = field(init=False)
    """Fraction of variance unexplained, ``1 - explained_variance``."""
    mse: float
    """Mean over tokens of ||x - x̂||² (summed over dimensions); see :func:`saelab.evals.metrics.mse`."""
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
    n_tokens: int
    """Tokens the reconstruction and density metrics average over."""
    n_predictions: int
    """Next-token predictions the CE losses average over (0 without CE)."""
    exclude_bos: bool
    ablate_bos: bool
    """Whether the zero-ablated run also zeroed BOS (SAELens's convention)."""
    density: Float[Tensor, " d_sae"] = field(repr=False, metadata=_NOT_A_SCALAR)
    """Per-feature fraction of tokens with a non-zero activation."""
    histogram: DensityHistogram = field(repr=False, metadata=_NOT_A_SCALAR)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fvu", 1.0 - self.explained_variance)

    def to_dict(self) -> dict[str, Any]:
        """The scalar metrics (every field but the density vector and histogram), in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("scalar", True)}

    def to_frame(self, name: str | None = None) -> pd.DataFrame:
        """A one-row DataFrame of :meth:`to_dict`, indexed by ``name`` (default: the hook)."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()], index=pd.Index([name or self.hook], name="sae"))


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
    return evaluate_saes(
        model, {"sae": sae}, token_batches, max_batches=max_batches, progress=progress, exclude_bos=exclude_bos,
        ablate_bos=ablate_bos, compute_ce=compute_ce, dense_threshold=dense_threshold,
        histogram_bins=histogram_bins, batch_size=batch_size, max_logit_bytes=max_logit_bytes,
    )["sae"]  # fmt: skip


def evaluate_saes(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
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
) -> dict[str, EvalResult]:
    """:func:`evaluate_sae` for several SAEs of one hook (a sweep) on the same tokens, each
    result equal to evaluating that SAE alone. The clean and zero-ablated runs are shared, so
    N SAEs cost one clean pass, one zero-ablated pass and N spliced passes, not 3N."""
    if not saes:
        raise ValueError("saes is empty; pass {name: SAE}")
    for sae in saes.values():
        check_compatible(model, sae)
    hooks = {sae_hook_name(sae) for sae in saes.values()}
    if len(hooks) > 1:
        raise ValueError(f"evaluate_saes shares passes at one hook; these SAEs read {sorted(hooks)}")
    hook = hooks.pop()
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches}")
    # islice, not a break inside the loop: a store's iterator must not lose one more batch.
    batches = itertools.islice(_iter_token_batches(token_batches, batch_size), max_batches)
    sizes = [n for n in (max_batches, _len_or_none(token_batches, batch_size)) if n is not None]
    total = min(sizes) if sizes else None
    members = [Spliced(sae, DownstreamStats(), ReconstructionStats(d_sae=sae.cfg.d_sae)) for sae in saes.values()]
    bos = BosPolicy(exclude=exclude_bos, ablate=ablate_bos)
    bar = tqdm(batches, total=total, desc=f"eval @ {hook}", disable=not progress, leave=False)
    for tokens, mask in bar:
        batch = checked_tokens(model, tokens, mask, bos)
        if compute_ce:
            downstream_batch(model, members, hook, batch, max_logit_bytes)
        else:
            _reconstruction_batch(model, members, hook, batch)
        first = members[0]
        if first.recon is not None and first.recon.n_tokens:
            bar.set_postfix(_live_postfix(first.recon, first.stats), refresh=False)
    bar.close()
    out = {}
    for name, (sae, down, recon) in zip(saes, members, strict=True):
        assert recon is not None
        if recon.n_tokens == 0:
            raise ValueError("No tokens were evaluated: token_batches was empty (or every token was excluded).")
        out[name] = _build_result(hook, sae, bos, recon, down if compute_ce else None, dense_threshold, histogram_bins)
    return out


def _reconstruction_batch(
    model: HookedTransformer,
    members: list[Spliced],
    hook: str,
    batch: CheckedTokens,
) -> None:
    """The reconstruction metrics of ``batch`` from a pass that stops at the hook."""
    tokens, attention_mask, positions = batch
    mask = attention_mask if attention_mask is not None else torch.ones_like(tokens)
    acts = hook_activations(model, hook, tokens, mask)
    with torch.inference_mode():
        for sae, _, recon in members:
            assert recon is not None
            feats, x_hat = sae_reconstruct(sae, acts)
            add_recon(recon, acts, feats, x_hat, positions.kept)


def _build_result(
    hook: str,
    sae: SAE,
    bos: BosPolicy,
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
