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
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.evals.accumulators import CELossMetrics, DownstreamStats, ReconstructionStats
from saelab.extract.hooks import encode_activations
from saelab.forward.edited_rows import DEFAULT_MAX_LOGIT_BYTES, rows_per_pass
from saelab.forward.losses import next_token_nll
from saelab.forward.resume import resume
from saelab.saes import check_compatible, sae_hook_name

# The vocabulary-sized tensors one CE chunk holds at once: clean log-probs, spliced logits,
# their log-probs and the element-wise KL, four [rows, pos, d_vocab] fp32 blocks.
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
    downstream_batch(model, [Spliced(sae, stats, None)], hook, batch, max_logit_bytes)
    return stats.result()


class Spliced(NamedTuple):
    """One SAE evaluated in a shared pass, with where its numbers go."""

    sae: SAE
    stats: DownstreamStats
    recon: ReconstructionStats | None


def downstream_batch(
    model: HookedTransformer,
    saes: Sequence[Spliced],
    hook: str,
    batch: CheckedTokens,
    max_logit_bytes: int,
) -> None:
    """The runs over ``batch`` for every SAE at ``hook``, in chunks of rows that keep the logits
    under ``max_logit_bytes``: the clean and zero-ablated runs once, a spliced run per SAE."""
    tokens, attention_mask, positions = batch
    rows = rows_per_pass(max_logit_bytes, tokens.shape[1], model.cfg.d_vocab, _LOGIT_BLOCKS)
    for start in range(0, tokens.shape[0], rows):
        part = slice(start, start + rows)
        _downstream_chunk(
            model,
            saes,
            hook,
            tokens[part],
            attention_mask[part] if attention_mask is not None else None,
            Positions(*(mask[part] for mask in positions)),
        )


def _downstream_chunk(
    model: HookedTransformer,
    saes: Sequence[Spliced],
    hook: str,
    tokens: Tensor,
    attention_mask: Tensor | None,
    positions: Positions,
) -> None:
    """The clean run (which keeps the activation at the hook), the zero-ablated run and each
    SAE's spliced run resumed from that activation, one logit block at a time."""
    device = model.cfg.device
    tokens = tokens.to(device)
    kept, zeroed, predict = (mask.to(device) for mask in positions)
    mask = attention_mask.to(device) if attention_mask is not None else None
    store: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> None:  # noqa: ARG001 (TransformerLens HookPoint)
        store["act"] = act.clone()

    logits = resume(model, hook, None, tokens, attention_mask=mask, fwd_hooks=[(hook, grab)])
    clean = float(next_token_nll(logits, tokens)[predict].double().sum())
    logp_clean = F.log_softmax(logits.float(), dim=-1)
    del logits
    act = store.pop("act")
    zero = float(next_token_nll(resume(model, hook, _zero(act, zeroed), tokens, attention_mask=mask), tokens)[
        predict].double().sum())  # fmt: skip
    for sae, stats, recon in saes:
        with torch.inference_mode():
            spliced_act = _splice(sae, act, kept, recon)
        logits = resume(model, hook, spliced_act, tokens, attention_mask=mask)
        spliced = next_token_nll(logits, tokens)
        logp_spliced = F.log_softmax(logits.float(), dim=-1)
        del logits
        kl = F.kl_div(logp_spliced, logp_clean, log_target=True, reduction="none").sum(dim=-1)
        del logp_spliced
        stats.n_predictions += int(predict.sum())
        stats.n_kl_positions += int(kept.sum())
        stats.clean_sum += clean
        stats.spliced_sum += float(spliced[predict].double().sum())
        stats.zero_sum += zero
        stats.kl_sum += float(kl[kept].double().sum())


def sae_reconstruct(sae: SAE, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(feats, x_hat)`` for activations in the model's layout; x_hat back on x's device/dtype."""
    feats = encode_activations(sae, x)
    x_hat = sae.decode(feats).to(device=x.device, dtype=x.dtype)
    return feats, x_hat


def _splice(sae: SAE, act: Tensor, kept: Tensor, recon: ReconstructionStats | None) -> Tensor:
    """The activation with the SAE's reconstruction at kept positions (others untouched).

    When ``recon`` is given, the reconstruction metrics are taken from this same encode, which
    saves a separate forward pass to the hook.
    """
    feats, x_hat = sae_reconstruct(sae, act)
    if recon is not None:
        add_recon(recon, act, feats, x_hat, kept)
    keep = kept.reshape(*kept.shape, *([1] * (act.ndim - 2)))
    return torch.where(keep, x_hat, act)


def _zero(act: Tensor, zeroed: Tensor) -> Tensor:
    zero = zeroed.reshape(*zeroed.shape, *([1] * (act.ndim - 2)))
    return torch.where(zero, torch.zeros_like(act), act)


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
