"""The notebooks' implement-it-yourself exercises: what each starts from, and a check of the
learner's function against the library that says what looks wrong (the pattern of ARENA's
exercises).

* Masked mean pooling (notebook 01): :func:`padded_features` gives a padded batch's
  features and its pooling mask; :func:`check_masked_mean` compares a learner's pooling
  with :func:`saelab.extract_features`.
* CE-loss recovered with two hooks (notebook 04): :func:`check_ce_loss_recovered` compares
  a learner's clean / spliced / zero-ablated runs with :func:`saelab.evals.ce_loss_metrics`.

A check returns an :class:`ExerciseCheck` instead of printing or raising: the notebook prints
it, and a wrong answer leaves the rest of the notebook runnable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.evals.ce_loss import ce_loss_metrics
from saelab.extract.batches import pad_rows
from saelab.extract.extract import encode_batch, extract_features
from saelab.extract.hooks import hook_activations
from saelab.extract.tokens import tokenize, tokenizer_of
from saelab.saes import check_compatible, sae_hook_name

# Agreement a correct answer reaches: the library batches texts differently (length-sorted)
# and sums in another order, so results agree to float32 rounding, not bit for bit.
POOLING_RTOL, POOLING_ATOL = 1e-4, 1e-5
CE_ATOL = 1e-3


@dataclass(frozen=True)
class ExerciseCheck:
    """The verdict on one exercise; printing it shows the message."""

    passed: bool
    message: str

    def __str__(self) -> str:
        return self.message


def _passed(what: str) -> ExerciseCheck:
    return ExerciseCheck(True, f"✓ {what}: matches the library.")


def _failed(what: str, *hints: str) -> ExerciseCheck:
    return ExerciseCheck(False, "\n".join([f"✗ {what}: not yet.", *(f"  hint: {h}" for h in hints)]))


class PaddedFeatures(NamedTuple):
    """What masked mean pooling starts from: one right-padded batch of texts, in the order given."""

    features: Float[Tensor, "batch pos d_sae"]
    """The SAE's features at every position, BOS and pads included (pads hold features too:
    the SAE encodes whatever activation sits there)."""
    mask: Bool[Tensor, "batch pos"]
    """True at the positions that count: real tokens, BOS excluded. Built from how each row
    was padded, never from the pad id (SmolLM2's pad id is its EOS id)."""
    expected: Float[Tensor, "batch d_sae"]
    """:func:`saelab.extract_features` of the same texts: the answer."""


def padded_features(model: HookedTransformer, sae: SAE, texts: Sequence[str]) -> PaddedFeatures:
    """The texts in one right-padded batch through the model and the SAE, with the pooling
    mask, and the library's mean-pooled features of the same texts."""
    check_compatible(model, sae)
    tokenized = tokenize(model, texts)
    pad = tokenizer_of(model).pad_token_id
    width = max(len(ids) for ids in tokenized.ids)
    batch = pad_rows(tokenized, range(len(texts)), width, "right", True, pad if isinstance(pad, int) else 0)
    acts = hook_activations(model, sae_hook_name(sae), batch.tokens, batch.attention_mask)
    features = encode_batch(sae, acts, batch).float().cpu()
    expected = extract_features(model, sae, texts, progress=False).float().cpu()
    return PaddedFeatures(features, batch.pool_mask.cpu(), expected)


MaskedMean = Callable[[Tensor, Tensor], Tensor]


def check_masked_mean(masked_mean: MaskedMean, padded: PaddedFeatures) -> ExerciseCheck:
    """Whether ``masked_mean(features, mask)`` gives the library's mean over real tokens, with
    a hint for the usual mistakes (pads or BOS averaged in, dividing by the padded width)."""
    what = "masked mean pooling"
    features, mask, expected = padded
    got = masked_mean(features.clone(), mask.clone())
    if not isinstance(got, Tensor):
        return _failed(what, f"return a tensor, not a {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        return _failed(what, f"return one row per text, [batch, d_sae] = {tuple(expected.shape)}; "
                             f"got {tuple(got.shape)}. Pool over the position axis (dim=1).")
    got = got.detach().float().cpu()
    if torch.allclose(got, expected, rtol=POOLING_RTOL, atol=POOLING_ATOL):
        return _passed(what)
    close = lambda other: torch.allclose(got, other, rtol=POOLING_RTOL, atol=POOLING_ATOL)  # noqa: E731
    if close(features.mean(dim=1)):
        return _failed(what, "that is the mean over every position, pads and BOS included (notebook 02 measures "
                             "that mistake): zero the positions where mask is False before summing.")
    summed = (features * mask[..., None]).sum(dim=1)
    if close(summed / mask.shape[1]):
        return _failed(what, "the sum is right; divide by the number of real tokens of each row, "
                             "mask.sum(dim=1), not by the padded width.")
    if close(summed):
        return _failed(what, "that is the masked sum; divide it by the number of real tokens of each row.")
    worst = int((got - expected).abs().amax(dim=1).argmax())
    return _failed(what, f"text {worst} is furthest off: a text's mean must not depend on the other texts "
                         "of its batch, nor on how much padding it got.")


CeLossRecovered = Callable[[HookedTransformer, SAE, str, Tensor], float]


def check_ce_loss_recovered(
    ce_loss_recovered: CeLossRecovered, model: HookedTransformer, sae: SAE, tokens: Int[Tensor, "batch pos"]
) -> ExerciseCheck:
    """Whether ``ce_loss_recovered(model, sae, hook, tokens)`` (``tokens``: rows that start with
    BOS, no padding) gives :func:`saelab.evals.ce_loss_metrics`'s CE-loss recovered, with the
    library's three CE losses in the hint when it does not."""
    what = "CE-loss recovered"
    reference = ce_loss_metrics(model, sae, tokens)
    with torch.no_grad():  # the learner's runs need no gradients
        got = ce_loss_recovered(model, sae, sae_hook_name(sae), tokens)
    try:
        value = float(got)
    except (TypeError, ValueError):
        return _failed(what, f"return one number, not a {type(got).__name__}")
    if abs(value - reference.ce_loss_recovered) <= CE_ATOL:
        return _passed(what)
    return _failed(
        what,
        f"expected {reference.ce_loss_recovered:.4f}, got {value:.4f}. The library's mean CE losses: "
        f"clean {reference.ce_loss_clean:.4f}, spliced {reference.ce_loss_spliced:.4f}, "
        f"zero-ablated {reference.ce_loss_zero:.4f} (nats).",
        "splice the SAE's reconstruction in at every position but BOS (position 0), whose huge residual "
        "the SAE was not trained on; zero every position, BOS included;",
        "average the next-token loss over the predictions made at positions 1 onwards (BOS's own prediction "
        "is left out of all three runs), then recovered = (zero - spliced) / (zero - clean).",
    )
