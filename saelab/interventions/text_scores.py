"""How a continuation reads under the *unsteered* model: fluency and prompt relevance.

* ``perplexity``: ``exp`` of the mean next-token loss of the continuation given the prompt.
  Steering that breaks the text raises it; the sweep bounds it at 2x the baseline's.
* ``relevance``: the mean pointwise mutual information between prompt and continuation,
  ``log p(c_t | prompt, c_<t) - log p(c_t | BOS, c_<t)`` per continuation token, in nats. It
  is positive when the prompt helps predict the continuation and falls towards 0 (or below)
  when the continuation ignores the prompt; it needs no judge model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.batches import pad_rows
from saelab.extract.tokens import Tokenized, bos_token_id
from saelab.forward.losses import last_token_logprobs

DEFAULT_BATCH = 32


@dataclass(frozen=True)
class ContinuationScores:
    """Per continuation (NaN where a continuation has no tokens)."""

    perplexity: Float[Tensor, " n"]
    relevance: Float[Tensor, " n"]
    """Nats per token of prompt-continuation PMI under the unsteered model."""
    n_tokens: Int[Tensor, " n"]


def continuation_scores(
    model: HookedTransformer,
    prompts: Sequence[list[int]],
    continuations: Sequence[list[int]],
    *,
    batch_size: int = DEFAULT_BATCH,
) -> ContinuationScores:
    """Perplexity and prompt relevance of each continuation (prompt ids start with BOS)."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    bos = bos_token_id(model)
    start = [bos] if bos is not None else []
    lengths = [len(c) for c in continuations]
    joined = [list(p) + list(c) for p, c in zip(prompts, continuations, strict=True)]
    with_prompt = _continuation_logprobs(model, joined, lengths, batch_size)
    alone = _continuation_logprobs(model, [start + list(c) for c in continuations], lengths, batch_size)
    n = torch.tensor([len(c) for c in continuations])
    nll = torch.tensor([-lp.mean().item() if lp.numel() else float("nan") for lp in with_prompt])
    pmi = torch.tensor(
        [(a - b).mean().item() if a.numel() else float("nan") for a, b in zip(with_prompt, alone, strict=True)]
    )
    return ContinuationScores(perplexity=nll.exp(), relevance=pmi, n_tokens=n)


def _continuation_logprobs(
    model: HookedTransformer, rows: list[list[int]], n_last: list[int], batch_size: int
) -> list[Float[Tensor, " n_cont"]]:
    """log p of the last ``n_last[i]`` tokens of each row given what precedes them."""
    out: list[Tensor] = [torch.empty(0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    for lo in range(0, len(order), batch_size):
        chunk = order[lo : lo + batch_size]
        width = max(len(rows[i]) for i in chunk)
        if width < 2:
            continue
        batch = pad_rows(Tokenized(ids=rows, has_bos=False, truncated=[]), chunk, width, "right", False, 0)
        tokens, mask = batch.tokens, batch.attention_mask
        device = model.cfg.device
        with torch.inference_mode():
            logits = model(tokens.to(device), attention_mask=mask.to(device))
            logprobs = last_token_logprobs(logits, tokens, mask, [n_last[i] for i in chunk])
        for i, lp in zip(chunk, logprobs, strict=True):
            out[i] = lp.cpu()
    return out
