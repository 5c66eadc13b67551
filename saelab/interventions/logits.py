"""A feature's direct effect on the logits beside its total effect on real text: the language
model's version of a "logit boost".

Direct effect: the decoder direction read straight through the unembedding, ``W_dec[f] @ W_U``
(the logit lens of :func:`saelab.analysis.logit_lens`: times ln_final's weight first when the
model keeps it unfolded; the final norm's division by the residual's scale is left out, so
values are logits per unit of activation, before normalisation). Total effect: what the
feature adds to the logits through everything downstream of its hook, measured on ``texts``
as the mean of ``clean - zero-ablated`` logits over the positions where the feature fires.
Where the two disagree, the layers after the hook change what the feature does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.analysis.feature import decoder_logits, logit_lens
from saelab.extract.tokens import token_strings
from saelab.interventions.ablation import check_sae
from saelab.interventions.edits import check_features
from saelab.interventions.effects import feature_effects


@dataclass(frozen=True)
class LogitEffect:
    """Direct and total logit effect of one feature, with their top tokens."""

    feature: int
    direct: Float[Tensor, " d_vocab"]
    """``W_dec[feature] @ W_U``: logits per unit of activation, through no later layer."""
    total: Float[Tensor, " d_vocab"]
    """Mean over the positions where the feature fires of clean minus zero-ablated logits."""
    n_positions: int
    """Positions the total effect averages over (where the feature fired on the texts)."""
    correlation: float
    """Pearson correlation of ``direct`` and ``total`` over the vocabulary."""
    overlap_promoted: float
    """Share of the ``top`` most promoted tokens the two effects have in common."""
    overlap_suppressed: float
    direct_top: pd.DataFrame
    """``direction, rank, token, token_id, logit`` (as :func:`saelab.analysis.logit_lens`)."""
    total_top: pd.DataFrame
    """The same columns for the total effect."""

    def to_frame(self) -> pd.DataFrame:
        """The top tokens side by side, one row per rank: for each of ``direct_promoted,
        total_promoted, direct_suppressed, total_suppressed`` the token and its logit."""
        n = int(np.sum(np.asarray(self.direct_top["direction"]) == "promoted"))
        out = pd.DataFrame({"rank": np.arange(1, n + 1)})
        for direction in ("promoted", "suppressed"):
            for name, top in (("direct", self.direct_top), ("total", self.total_top)):
                part = top[top["direction"] == direction]
                out[f"{name}_{direction}"] = np.asarray(part["token"])
                out[f"{name}_{direction}_logit"] = np.asarray(part["logit"])
        return out


def direct_logits(model: HookedTransformer, sae: SAE, feature: int) -> Float[Tensor, " d_vocab"]:
    """``W_dec[feature] @ W_U`` over the whole vocabulary, as :func:`saelab.analysis.logit_lens`
    computes it (ln_final's weight applied first when the model keeps one)."""
    return decoder_logits(model, sae, feature)


def top_tokens(model: HookedTransformer, logits: Float[Tensor, " d_vocab"], top: int) -> pd.DataFrame:
    """``direction, rank, token, token_id, logit`` of the ``top`` highest and lowest entries."""
    top = min(top, logits.numel())
    frames = []
    for name, picked in (("promoted", logits.topk(top)), ("suppressed", (-logits).topk(top))):
        ids = picked.indices
        frames.append(pd.DataFrame({
            "direction": name,
            "rank": np.arange(1, top + 1),
            "token": token_strings(model, ids.tolist(), contiguous=False),
            "token_id": ids.numpy(),
            "logit": logits[ids].numpy().astype(np.float64),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def logit_effect(
    model: HookedTransformer,
    sae: SAE,
    feature: int,
    texts: Sequence[str] | Tensor,
    *,
    top: int = 10,
    batch_size: int = 8,
) -> LogitEffect:
    """Feature ``feature``'s direct effect (decoder direction through the unembedding) beside its
    total effect on ``texts`` (mean logit change when it is zero-ablated, at the positions where
    it fires), the ``top`` tokens each promotes and suppresses, their correlation over the
    vocabulary and the overlap of their top sets. Raises if the feature never fires on the texts."""
    check_sae(model, sae)
    feature = check_features([feature], sae.cfg.d_sae)[0]
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    effects = feature_effects(
        model, sae, [feature], texts, mode="zero", batch_size=batch_size, keep_logits=True, progress=False
    )
    n_positions = int(effects.fired().sum())
    if n_positions == 0:
        raise ValueError(
            f"feature {feature} never fires on these texts (BOS aside), so it has no total effect to measure; "
            "pass texts where it is active (its direct effect alone: saelab.analysis.logit_lens)"
        )
    assert effects.mean_logit_delta is not None
    total = -effects.mean_logit_delta[0]  # clean minus ablated: what the feature adds
    direct = direct_logits(model, sae, feature)
    k = min(top, direct.numel())
    return LogitEffect(
        feature=feature, direct=direct, total=total, n_positions=n_positions,
        correlation=float(torch.corrcoef(torch.stack([direct, total]).double())[0, 1]),
        overlap_promoted=_overlap(direct, total, k), overlap_suppressed=_overlap(-direct, -total, k),
        direct_top=logit_lens(model, sae, feature, top=top), total_top=top_tokens(model, total, top),
    )  # fmt: skip


def _overlap(a: Tensor, b: Tensor, k: int) -> float:
    shared = set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())
    return len(shared) / k
