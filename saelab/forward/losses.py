"""The one next-token loss, and the masks and slices its callers read it through.

``next_token_nll`` is ``logsumexp(logits) - logit[target]`` in fp32: the same number as
``F.cross_entropy(reduction="none")``, without the second vocabulary-sized block a
log-softmax would allocate (SmolLM2's vocabulary has 49,152 entries per position).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def next_token_nll(
    logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """``-log p(tokens[:, i + 1] | tokens[:, :i + 1])`` at each position i but the last, in fp32.

    ``logits`` and ``tokens`` cover the same positions (slice both alike to read a window).
    Differentiable in ``logits``.
    """
    logits = logits[:, :-1].float()
    target = logits.gather(-1, tokens[:, 1:, None].to(device=logits.device, dtype=torch.long)).squeeze(-1)
    return logits.logsumexp(dim=-1) - target


def prediction_mask(attention_mask: Int[Tensor, "batch pos"]) -> Bool[Tensor, "batch pos_minus_1"]:
    """The real next-token predictions: position i predicts token i + 1, both real."""
    real = attention_mask.bool()
    return real[:, :-1] & real[:, 1:]


def last_token_logprobs(
    logits: Float[Tensor, "batch pos vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    n_last: Sequence[int],
) -> list[Float[Tensor, " n"]]:
    """``log p`` of the last ``n_last[r]`` real tokens of each row ``r`` given what precedes
    them (a continuation after its prompt), on the CPU; right or left padding.

    Each row needs ``n_last[r] < `` its number of real tokens (the first token has no prediction).
    """
    if len(n_last) != tokens.shape[0]:
        raise ValueError(f"n_last has {len(n_last)} entries for {tokens.shape[0]} rows")
    logp = -next_token_nll(logits, tokens)  # logp[:, j] is the log-probability of token j + 1
    real = attention_mask.bool()
    last = real.shape[1] - 1 - real.flip(1).to(torch.int8).argmax(dim=1)  # each row's last real position
    n_real = real.sum(dim=1)
    out = []
    for r, n in enumerate(n_last):
        if not 0 <= n < int(n_real[r]):
            raise ValueError(f"row {r} has {int(n_real[r])} real tokens: it cannot score its last {n}")
        end = int(last[r])
        out.append(logp[r, end - n : end].detach().cpu())
    return out
