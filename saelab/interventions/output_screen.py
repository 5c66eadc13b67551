"""Which features *write* a concept: screens of steering candidates by their effect on the output.

Specialists (ranked by AUROC on labelled text) *detect* a category; Arad et al. (EMNLP 2025,
"SAEs are good for steering, if you select the right features") show that steering works
with *output* features, whose amplification makes the model write the concept, and that
the two rarely coincide. Two screens, cheapest first:

* :func:`logit_lens_screen`: every feature's decoder row read through the unembedding
  (``W_dec @ W_U``, times ln_final's weight), standardised over the vocabulary, averaged over
  the category's characteristic tokens (:mod:`saelab.interventions.concept_tokens`). No
  forward pass; it ranks the whole SAE.
* :func:`output_scores`: each candidate is added at a fixed strength (a multiple of its
  typical max) at every position but BOS of the *select* prompts, in one forward pass that
  resumes from the hook, and the score is the mean change, over prompts, of the log
  probability mass the next-token distribution puts on the category's characteristic tokens
  (nats). Arad et al. score a feature on its *own* logit-lens tokens (concept-free, since
  their features carry descriptions); steering towards a named category needs that
  category's tokens, so that is the ranking score here, and theirs (``own_score``: the same
  change on the feature's own top logit-lens tokens) is reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.analysis.feature import unembedding_directions
from saelab.extract.hooks import run_hooks
from saelab.forward.resume import resume
from saelab.interventions.edits import check_features
from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.generation import left_pad
from saelab.interventions.splice import edit_mask
from saelab.saes import sae_hook_name

SCREEN_BLOCK = 512
"""Features per block of ``W_dec @ W_U``: 512 x 49,152 fp32 logits are 100 MB."""
ROWS_PER_PASS = 256
"""Edited prompt rows per resumed forward pass."""


def logit_lens_screen(
    model: HookedTransformer, sae: SAE, token_sets: Mapping[str, Tensor], *, top: int
) -> pd.DataFrame:
    """Per category, the ``top`` features whose decoder rows most raise its tokens' logits:
    ``category, feature, screen`` (mean standardised logit over the category's tokens)."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    d_sae = int(sae.cfg.d_sae)
    scores = {c: torch.empty(d_sae) for c in token_sets}
    w_u = model.W_U.detach()
    with torch.inference_mode():
        for lo in range(0, d_sae, SCREEN_BLOCK):
            rows = unembedding_directions(model, sae, torch.arange(lo, min(d_sae, lo + SCREEN_BLOCK)))
            logits = (rows @ w_u).float()
            z = (logits - logits.mean(-1, keepdim=True)) / logits.std(-1, keepdim=True).clamp_min(1e-6)
            for category, ids in token_sets.items():
                scores[category][lo : lo + len(rows)] = z[:, ids.to(z.device)].mean(-1).cpu()
    frames = []
    for category, score in scores.items():
        best = score.topk(min(top, d_sae))
        frames.append(pd.DataFrame({"category": category, "feature": best.indices.numpy(),
                                    "screen": best.values.numpy()}))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def output_scores(
    model: HookedTransformer,
    sae: SAE,
    features: Sequence[int],
    prompts: Sequence[list[int]],
    concept_ids: Int[Tensor, " n_tokens"],
    *,
    stats: FeatureStats,
    strength: float = 4.0,
    own_top: int = 20,
) -> pd.DataFrame:
    """Each feature's output score for one concept: ``feature, output_score, own_score``
    (nats of log mass moved onto the concept's tokens / onto its own top ``own_top``
    logit-lens tokens, mean over ``prompts``, which are token ids with BOS first)."""
    ids = list(dict.fromkeys(check_features(features, sae.cfg.d_sae)))
    if not prompts:
        raise ValueError("output scores need at least one prompt")
    if not float(strength) > 0:
        raise ValueError(f"strength must be a positive multiple of the typical max, got {strength}")
    raw = stats.typical_max[ids].float() * float(strength)
    if bool((raw <= 0).any()):
        dead = [f for f, r in zip(ids, raw.tolist(), strict=True) if r <= 0]
        raise ValueError(f"features {dead} never fire on the statistics' sample: no strength unit to steer with")
    index = torch.tensor(ids)
    directions = sae.W_dec.detach()[index].float() * raw[:, None]  # [n, d_model]
    own = _own_tokens(model, sae, index, own_top)
    # One steered pass serves both scores: they read two token sets of the same distributions.
    change = _mass_change(model, sae_hook_name(sae), prompts, directions, [(concept_ids, mine) for mine in own])
    concept, own_change = change[:, 0], change[:, 1]
    return pd.DataFrame({"feature": ids, "output_score": concept.numpy(), "own_score": own_change.numpy()})


def vector_output_scores(
    model: HookedTransformer,
    hook: str,
    vectors: Float[Tensor, "n d_model"],
    prompts: Sequence[list[int]],
    concept_ids: Int[Tensor, " n_tokens"],
) -> Float[Tensor, " n"]:
    """The output score of plain steering vectors (added as they are) at ``hook``."""
    return _mass_change(model, hook, prompts, vectors.float(), [(concept_ids,)] * vectors.shape[0])[:, 0]


def _own_tokens(model: HookedTransformer, sae: SAE, index: Tensor, top: int) -> Tensor:
    with torch.inference_mode():
        logits = unembedding_directions(model, sae, index) @ model.W_U.detach()
    return logits.float().topk(min(top, logits.shape[-1]), dim=-1).indices.cpu()


def _mass_change(
    model: HookedTransformer,
    hook: str,
    prompts: Sequence[list[int]],
    directions: Float[Tensor, "n d_model"],
    token_sets: list[tuple[Tensor, ...]],
) -> Float[Tensor, "n k"]:
    """Mean over prompts of ``log P(next in set | steered) - log P(next in set | clean)``, for
    each direction and each of its ``k`` token sets."""
    tokens, attention = left_pad(prompts, model.cfg.device or "cpu")
    x = run_hooks(model, [hook], tokens, attention)[hook]  # [P, pos, d]
    where = edit_mask(attention.cpu()).to(x.device)[..., None].to(x.dtype)
    n, p = directions.shape[0], len(prompts)
    clean = _last_logprobs(model, hook, x, tokens, attention)  # [P, vocab]
    per_block = max(1, ROWS_PER_PASS // p)
    out = torch.empty(n, len(token_sets[0]) if token_sets else 0)
    for lo in range(0, n, per_block):
        block = directions[lo : lo + per_block].to(device=x.device, dtype=x.dtype)
        edited = (x[None] + block[:, None, None, :] * where[None]).flatten(0, 1)
        logp = _last_logprobs(model, hook, edited, tokens.repeat(len(block), 1), attention.repeat(len(block), 1)).view(
            len(block), p, -1
        )
        for j in range(len(block)):
            for k, ids in enumerate(token_sets[lo + j]):
                ids = ids.to(logp.device)
                out[lo + j, k] = (logp[j][:, ids].logsumexp(-1) - clean[:, ids].logsumexp(-1)).mean().cpu()
    return out


def _last_logprobs(
    model: HookedTransformer, hook: str, x: Tensor, tokens: Tensor, attention: Tensor
) -> Float[Tensor, "rows vocab"]:
    """Next-token log-probabilities after each row's last position, resumed from ``hook``."""
    logits = resume(model, hook, x, tokens, attention_mask=attention, from_position=-1)
    return logits[:, 0].float().log_softmax(-1)
