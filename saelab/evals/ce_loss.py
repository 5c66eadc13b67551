"""The SAE spliced into its model: CE loss of the clean, spliced and zero-ablated runs, and
KL(clean || spliced), with reconstruction metrics read inside the spliced pass.

Token batches are ``[batch, pos]`` ids with BOS at position 0 (an attention mask is
optional; with one, the first attended token of each row is that row's BOS). CE-loss
recovered is ``(zero - spliced) / (zero - clean)`` and KL is ``KL(clean || spliced)`` per
position, averaged, as SAELens computes them.

BOS. From the middle layers on, SmolLM2's BOS residual has a norm orders of magnitude above
every other position's (it is an attention sink), so a reconstruction spliced in there wrecks
every later position. With ``exclude_bos=True`` (the default, like SAELens's ``ignore_tokens``) BOS is
not spliced, its own prediction is not counted in any of the three runs, and it is left out
of the reconstruction and density metrics.

The zero-ablated run zeroes BOS too by default (``ablate_bos=True``), as SAELens does, so
CE-loss recovered agrees with SAELens's ``ce_loss_score``. It also makes the baseline clean:
at a ``hook_resid_pre`` of a model without biases (SmolLM2), zeroing every position leaves the
model nothing and the CE loss is exactly ``ln(d_vocab)``. ``ablate_bos=False`` zeroes only
the positions the splice replaces instead; that baseline is worse than uniform (the model
still sees BOS and predicts confidently from it, so its CE loss passes ``ln(d_vocab)``), which
raises CE-loss recovered for the same spliced loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.hook_names import resume_layer_for_hook
from saelab.evals.accumulators import CELossMetrics, DownstreamStats, ReconstructionStats
from saelab.extract.hooks import encode_activations
from saelab.saes import check_compatible, sae_hook_name

# Upper bound on the vocabulary-sized tensors one CE chunk holds at once (clean log-probs,
# spliced logits, their log-probs and the element-wise KL: four [rows, pos, d_vocab] fp32
# blocks). SmolLM2's 49,152-token vocabulary makes these the largest tensors by far.
DEFAULT_MAX_LOGIT_BYTES = 512 * 2**20
_LOGIT_BLOCKS = 4


class MissingBOSWarning(UserWarning):
    """Token rows were passed with ``exclude_bos=True`` but do not start with the BOS token."""

class BosPolicy(NamedTuple):
    exclude: bool
    """Leave BOS out of the splice, the counted predictions and the reconstruction metrics."""
    ablate: bool
    """Zero BOS in the zero-ablated run (whatever ``exclude`` says)."""


class Positions(NamedTuple):
    kept: Bool[Tensor, "batch pos"]
    """Positions the SAE is applied to (spliced and measured): real tokens, minus BOS if excluded."""
    zeroed: Bool[Tensor, "batch pos"]
    """Positions the zero-ablated run zeroes: ``kept``, plus BOS when ``ablate_bos``."""
    predict: Bool[Tensor, "batch pos_minus_1"]
    """CE terms counted: the prediction made at position i of token i+1, both real, i kept."""


class CheckedTokens(NamedTuple):
    """Token rows checked once, and the positions every run over them uses."""

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"] | None
    positions: Positions


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
    check_compatible(model, sae)
    hook = sae_hook_name(sae)
    stats = DownstreamStats()
    batch = checked_tokens(model, tokens, attention_mask, BosPolicy(exclude=exclude_bos, ablate=ablate_bos))
    downstream_batch(model, sae, hook, batch, max_logit_bytes, stats, recon=None)
    return stats.result()



def downstream_batch(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    batch: CheckedTokens,
    max_logit_bytes: int,
    stats: DownstreamStats,
    recon: ReconstructionStats | None,
) -> None:
    """The three runs over ``batch``, in chunks of rows that keep the logits under ``max_logit_bytes``."""
    tokens, attention_mask, positions = batch
    rows = max(1, max_logit_bytes // (_LOGIT_BLOCKS * tokens.shape[1] * model.cfg.d_vocab * 4))
    for start in range(0, tokens.shape[0], rows):
        part = slice(start, start + rows)
        _downstream_chunk(
            model,
            sae,
            hook,
            tokens[part],
            attention_mask[part] if attention_mask is not None else None,
            Positions(*(mask[part] for mask in positions)),
            stats,
            recon,
        )


def _downstream_chunk(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    tokens: Tensor,
    attention_mask: Tensor | None,
    positions: Positions,
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
    the hook: at layer 20 of 30, two thirds of the layers. Other hooks patch a full run.
    """
    resume = resume_layer_for_hook(hook)
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


def _next_token_nll(
    logp: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """``-log p(token_{i+1} | tokens_{<=i})`` for each position i but the last."""
    return -logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def sae_reconstruct(sae: SAE, x: Tensor) -> tuple[Tensor, Tensor]:
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
        feats, x_hat = sae_reconstruct(sae, act)
        if recon is not None:
            add_recon(recon, act, feats, x_hat, kept)
        keep = kept.reshape(*kept.shape, *([1] * (act.ndim - 2)))
        return torch.where(keep, x_hat, act)

    return hook_fn


def _zero_hook(zeroed: Tensor) -> Callable[..., Tensor]:
    def hook_fn(act: Tensor, hook: Any) -> Tensor:  # noqa: ARG001
        zero = zeroed.reshape(*zeroed.shape, *([1] * (act.ndim - 2)))
        return torch.where(zero, torch.zeros_like(act), act)

    return hook_fn


def add_recon(recon: ReconstructionStats, x: Tensor, feats: Tensor, x_hat: Tensor, kept: Tensor) -> None:
    # Per-head hooks (hook_z) are [batch, pos, heads, d_head]; metrics see one flat vector per token.
    mask = kept.to(x.device)
    recon.add(
        x.reshape(*x.shape[:2], -1)[mask].float(),
        feats.reshape(*feats.shape[:2], -1)[mask.to(feats.device)],
        x_hat.reshape(*x_hat.shape[:2], -1)[mask].float(),
    )


def checked_tokens(
    model: HookedTransformer, tokens: Tensor, attention_mask: Tensor | None, bos: BosPolicy
) -> CheckedTokens:
    """``tokens`` validated, the positions each run uses under ``bos``, and a
    :class:`MissingBOSWarning` when BOS is to be excluded but rows do not start with it."""
    tokens, attention_mask = validate_tokens(tokens, attention_mask)
    warn_if_no_bos(model, tokens, attention_mask, bos.exclude)
    return CheckedTokens(tokens, attention_mask, positions_of(tokens, attention_mask, bos))


def positions_of(tokens: Tensor, attention_mask: Tensor | None, bos: BosPolicy) -> Positions:
    real = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    kept = real.clone()
    if bos.exclude:
        # The first real token of each row is its BOS (position 0 without padding; later with left padding).
        first = real.to(torch.int8).argmax(dim=1)
        kept[torch.arange(tokens.shape[0]), first] = False
    return Positions(kept=kept, zeroed=real if bos.ablate else kept, predict=kept[:, :-1] & real[:, 1:])


def warn_if_no_bos(model: HookedTransformer, tokens: Tensor, attention_mask: Tensor | None, exclude_bos: bool) -> None:
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


def validate_tokens(tokens: Tensor, attention_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
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
