"""Which input tokens drive a feature: gradient x embedding, checked against occlusion.

For the feature ``f`` of an SAE at ``position`` of a text, each token ``q <= position`` (BOS
aside) gets two scores, both in units of the feature's activation and both estimating
``f(clean) - f(token q's embedding replaced by the baseline)``:

- ``gradient_x_embedding``: ``(e_q - b) . d f / d e_q``, the linear estimate, from one forward
  and one backward pass;
- ``occlusion``: the exact leave-one-out effect, one forward pass per token (batched).

``e_q`` is the token embedding (``hook_embed``; positional embeddings, where a model adds them,
are kept, and SmolLM2's rotary positions are not an embedding at all). The baseline ``b`` is
the zero vector (``baseline="zero"``, the default) or the mean of the embedding matrix
(``"mean"``, an "average token" that stays closer to the model's input distribution).
Positive means the token raises the feature. Their agreement is reported as Pearson and
Spearman correlations over the scored tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from sae_lens import SAE
from scipy import stats
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations
from saelab.extract.tokens import token_strings, tokenize
from saelab.interventions import _gradients as G
from saelab.interventions.edits import check_features
from saelab.saes import sae_hook_name

Baseline = Literal["zero", "mean"]
BASELINES: tuple[str, ...] = ("zero", "mean")
EMBED_HOOK = "hook_embed"


@dataclass(frozen=True)
class TokenAttribution:
    """How much each input token drives one feature at one position."""

    frame: pd.DataFrame
    """One row per scored token (positions 1..``position``): ``position``, ``token`` (text),
    ``gradient_x_embedding`` and ``occlusion``."""
    tokens: list[str]
    """Every token of the text up to ``position``, BOS included, as text."""
    hook: str
    feature: int
    position: int
    """The feature's position (BOS is 0), non-negative."""
    activation: float
    """The feature's value there on the clean text."""
    baseline: str
    pearson: float
    """Pearson correlation of the two scores (NaN with fewer than 2 tokens or a constant score)."""
    spearman: float
    """Spearman rank correlation of the two scores (NaN likewise)."""


def token_attribution(
    model: HookedTransformer,
    sae: SAE,
    text: str,
    feature: int,
    position: int,
    *,
    baseline: Baseline = "zero",
) -> TokenAttribution:
    """Scores of the tokens at positions 1..``position`` of ``text`` for ``feature`` of ``sae``
    at ``position`` (counted with BOS at 0; negative counts from the end)."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {list(BASELINES)}, got {baseline!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    hook = sae_hook_name(sae)
    G.sae_dict(model, sae)  # checks the hook exists and the widths match
    (feature,) = check_features([feature], sae.cfg.d_sae)
    ids = tokenize(model, [text]).ids[0]
    position = _check_position(position, len(ids))
    tokens = torch.tensor([ids[: position + 1]], device=model.cfg.device)
    base = _baseline(model, baseline)
    grad_x_emb, activation = _gradient_x_embedding(model, sae, hook, tokens, feature, base)
    occlusion = _occlusion(model, sae, hook, tokens, feature, base, activation)
    strings = token_strings(model, ids[: position + 1])
    frame = pd.DataFrame(
        {
            "position": np.arange(1, position + 1),
            "token": strings[1:],
            "gradient_x_embedding": grad_x_emb,
            "occlusion": occlusion,
        }
    )
    return TokenAttribution(
        frame=frame,
        tokens=strings,
        hook=hook,
        feature=feature,
        position=position,
        activation=activation,
        baseline=baseline,
        pearson=_correlation(grad_x_emb, occlusion, "pearson"),
        spearman=_correlation(grad_x_emb, occlusion, "spearman"),
    )


def _check_position(position: int, n_tokens: int) -> int:
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise TypeError(f"position must be an integer, got {position!r}")
    if not -n_tokens <= position < n_tokens:
        raise ValueError(f"position {position} is out of range: the text has {n_tokens} tokens (BOS included)")
    position = int(position) % n_tokens
    if position == 0:
        raise ValueError("position 0 is BOS, whose features saelab never attributes; pick a later token")
    return position


def _baseline(model: HookedTransformer, baseline: str) -> Tensor:
    w_e = model.W_E.detach()
    return torch.zeros_like(w_e[0]) if baseline == "zero" else w_e.mean(dim=0)


def _feature_at(sae: SAE, x: Tensor, position: int, feature: int) -> Tensor:
    """The feature's value at ``position`` in every row of the hook's activation ``x``."""
    return encode_activations(sae, x[:, position])[:, feature]


def _gradient_x_embedding(
    model: HookedTransformer, sae: SAE, hook: str, tokens: Tensor, feature: int, base: Tensor
) -> tuple[np.ndarray, float]:
    store: dict[str, Tensor] = {}

    def leaf(embed: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001
        store["e"] = embed.detach().requires_grad_()
        return store["e"]

    position = tokens.shape[1] - 1
    with torch.enable_grad():
        x = G.run_to(model, hook, tokens, [(EMBED_HOOK, leaf)])
        value = _feature_at(sae, x, position, feature)[0]
        (grad,) = torch.autograd.grad(value, [store["e"]], allow_unused=True)
    embed = store["e"].detach()
    grad = torch.zeros_like(embed) if grad is None else grad
    scores = ((embed - base.to(embed)) * grad).sum(dim=-1)[0, 1:]
    return scores.float().cpu().numpy(), float(value.detach())


def _occlusion(
    model: HookedTransformer, sae: SAE, hook: str, tokens: Tensor, feature: int, base: Tensor, clean: float
) -> np.ndarray:
    """Row r replaces the embedding of token r + 1 by the baseline; one batched run to the hook."""
    position = tokens.shape[1] - 1
    rows = torch.arange(position, device=tokens.device)

    def occlude(embed: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001
        out = embed.clone()
        out[rows, rows + 1] = base.to(out)
        return out

    with torch.no_grad():
        x = G.run_to(model, hook, tokens.expand(position, -1), [(EMBED_HOOK, occlude)])
        occluded = _feature_at(sae, x, position, feature)
    return (clean - occluded).float().cpu().numpy()


def _correlation(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    if kind == "spearman":  # Pearson of the (average) ranks
        a, b = stats.rankdata(a), stats.rankdata(b)
    return float(np.corrcoef(a, b)[0, 1])
