"""One feature at a glance: density, activation histogram, logit lens, category means and
its Neuronpedia page; everything the feature explorer shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.analysis._checks import as_numpy, check_feature_ids, check_top, encode_labels, one_hot
from saelab.extract.per_token import PerTokenFeatures
from saelab.extract.tokens import token_strings
from saelab.saes import sae_hook_name, sae_neuronpedia_url

if TYPE_CHECKING:
    from saelab.analysis._checks import Pooled


class Histogram(NamedTuple):
    counts: Int[np.ndarray, " bins"]
    edges: Float[np.ndarray, " bins_plus_1"]


@dataclass(frozen=True)
class FeatureSummary:
    """Everything the feature explorer shows about one feature."""

    feature: int
    hook: str
    d_sae: int
    density: float | None
    """Fraction of tokens on which the feature is active (> 0), from ``per_token``; None
    without it."""
    histogram: Histogram | None
    """(counts, edges) of the non-zero per-token activations (pooled ones when only
    ``pooled`` is given); None when neither is given."""
    logit_lens: pd.DataFrame | None
    """Columns ``direction`` ("promoted"/"suppressed"), ``rank, token, token_id, logit``:
    the tokens whose logits the feature's decoder direction raises / lowers most, i.e.
    ``W_dec[f] @ W_U`` (times ln_final's weight first when the model keeps it unfolded;
    the unembedding bias is left out, as it does not depend on the feature). None without
    a model."""
    category_means: pd.DataFrame | None
    """Columns ``category, mean, frac_active`` (pooled activation per category, share of the
    category's texts with activation > 0); None unless ``pooled`` and ``labels`` are given."""
    neuronpedia_url: str | None
    explanation: str | None = None
    """What the feature responds to, in words (e.g. from :mod:`saelab.autointerp`); None when
    none was given. Plain text: the caller decides where it came from."""
    explanation_score: str | None = None
    """How well that explanation scored, as the caller words it (e.g. "simulation 0.41,
    shuffled 0.02"); None when not given."""


def feature_summary(
    sae: SAE,
    feature: int,
    pooled: Pooled | None = None,
    per_token: PerTokenFeatures | None = None,
    model: HookedTransformer | None = None,
    *,
    labels: Sequence[str] | None = None,
    bins: int = 30,
    top: int = 10,
    explanation: str | None = None,
    explanation_score: str | None = None,
) -> FeatureSummary:
    """Density, activation histogram, logit lens, category means and Neuronpedia link of
    one feature (each part only when its inputs are given); the logit lens lists ``top``
    tokens each way. ``explanation`` and ``explanation_score`` are passed through as given."""
    d_sae = int(sae.cfg.d_sae)
    feature = check_feature_ids([feature], d_sae)[0]
    bins, top = check_top(bins, "bins"), check_top(top)
    column = None if pooled is None else _pooled_column(pooled, feature, d_sae)
    if labels is not None and column is None:
        raise ValueError("labels were given without pooled activations; pass pooled=[n_texts, d_sae] too")
    values, density = None, None
    if per_token is not None:
        values = _per_token_values(per_token, feature, d_sae)
        density = float(values.size / max(1, per_token.row_ptr.numel() - 1))
    source = values if values is not None else (column[column != 0] if column is not None else None)
    return FeatureSummary(
        feature=feature,
        hook=sae_hook_name(sae),
        d_sae=d_sae,
        density=density,
        histogram=None if source is None else Histogram(*np.histogram(source, bins=bins)),
        logit_lens=None if model is None else logit_lens(model, sae, feature, top=top),
        # column is set whenever labels are (checked above).
        category_means=None if labels is None or column is None else category_means(column, labels),
        neuronpedia_url=sae_neuronpedia_url(sae, feature),
        explanation=explanation,
        explanation_score=explanation_score,
    )


def _pooled_column(pooled: Pooled, feature: int, d_sae: int) -> Float[np.ndarray, " n_texts"]:
    x = as_numpy(pooled, "pooled")
    if x.shape[1] != d_sae:
        raise ValueError(f"pooled has {x.shape[1]} features but the SAE has {d_sae}; use this SAE's activations")
    return x[:, feature]


def _per_token_values(per_token: PerTokenFeatures, feature: int, d_sae: int) -> Float[np.ndarray, " n_active"]:
    if per_token.d_sae != d_sae:
        raise ValueError(
            f"per_token has {per_token.d_sae} features but the SAE has {d_sae}; use this SAE's activations"
        )
    values = per_token.values[per_token.feature_idx == feature].float().numpy()
    return values[values > 0]


def category_means(column: Float[np.ndarray, " n_texts"], labels: Sequence[str]) -> pd.DataFrame:
    """Mean pooled activation of one feature per category, and the share of the category's
    texts where it is active (> 0). Categories in order of first appearance."""
    lab = encode_labels(labels, len(column))
    in_category = one_hot(lab.codes, len(lab.names))
    n_texts = in_category.sum(axis=0)
    return pd.DataFrame(
        {
            "category": lab.names,
            "mean": (in_category.T @ column) / n_texts,
            "frac_active": (in_category.T @ (column > 0)) / n_texts,
        }
    )


def unembedding_directions(model: HookedTransformer, sae: SAE, features: Tensor) -> Float[Tensor, "n d_model"]:
    """Decoder rows ``features`` as the unembedding reads them, on W_U's device and dtype."""
    if sae.cfg.d_in != model.cfg.d_model:
        raise ValueError(f"SAE d_in={sae.cfg.d_in} does not match the model's d_model={model.cfg.d_model}")
    w_u = model.W_U.detach()
    rows = sae.W_dec.detach()[features.to(sae.W_dec.device)].to(device=w_u.device, dtype=w_u.dtype)
    ln_weight = getattr(model.ln_final, "w", None)
    # Unfolded LayerNorm/RMSNorm scales each dimension before W_U (fold_ln=True puts this
    # weight into W_U instead, and then the model has no .w here).
    return rows * ln_weight.detach() if ln_weight is not None else rows


def decoder_logits(model: HookedTransformer, sae: SAE, feature: int) -> Float[Tensor, " d_vocab"]:
    """Feature ``feature``'s decoder direction read through the unembedding, over the vocabulary."""
    direction = unembedding_directions(model, sae, torch.tensor([feature]))[0]
    with torch.inference_mode():
        return (direction @ model.W_U.detach()).float().cpu()


def logit_lens(model: HookedTransformer, sae: SAE, feature: int, top: int = 10) -> pd.DataFrame:
    """Tokens whose logits feature ``feature``'s decoder direction raises and lowers most
    (see :attr:`FeatureSummary.logit_lens`)."""
    logits = decoder_logits(model, sae, feature)
    top = min(top, logits.numel())
    frames = []
    for name, picked in (("promoted", logits.topk(top)), ("suppressed", (-logits).topk(top))):
        ids = picked.indices
        frames.append(
            pd.DataFrame(
                {
                    "direction": name,
                    "rank": np.arange(1, top + 1),
                    "token": token_strings(model, ids.tolist(), contiguous=False),
                    "token_id": ids.numpy(),
                    "logit": logits[ids].numpy().astype(np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def neuronpedia_link(sae: SAE, feature: int) -> str | None:
    """The feature's Neuronpedia page, or None when the SAE has no Neuronpedia id (e.g. the
    bundled offline suite)."""
    return sae_neuronpedia_url(sae, check_feature_ids([feature], int(sae.cfg.d_sae))[0])
