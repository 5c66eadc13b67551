"""Each feature's typical scale on real text: the unit steering strengths are given in, and the
mean that mean-ablation writes.

Measured once per (model, SAE, text sample) from the per-token features of the sample (the
labelled dataset unless told otherwise, read through saelab's feature cache), and cached on
disk beside them, so a notebook that already extracted features pays nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from sae_lens import SAE
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_save_tensors
from saelab._util.keys import model_identity, sae_identity, stable_hash, texts_digest
from saelab._util.paths import cache_dir
from saelab.data import load_dataset
from saelab.extract.cache import cached_per_token
from saelab.extract.per_token import PerTokenFeatures
from saelab.saes import sae_hook_name

log = logging.getLogger(__name__)

TOP_TEXTS = 10
"""``typical_max`` averages a feature's largest activation over its this many strongest texts:
one outlier token (the massive first token after BOS in a few percent of texts) cannot set the unit."""
STATS_VERSION = 1


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature statistics of one SAE on a text sample (BOS excluded)."""

    typical_max: Float[Tensor, " d_sae"]
    """Mean over the feature's ``TOP_TEXTS`` strongest texts of its largest activation in each
    (0 for a feature that never fires on the sample). Steering strength 1.0 means this much."""
    mean: Float[Tensor, " d_sae"]
    """Mean activation per token, zeros included: what mean-ablation writes."""
    frequency: Float[Tensor, " d_sae"]
    """Fraction of tokens on which the feature fires."""
    n_texts: int
    n_tokens: int

    @property
    def d_sae(self) -> int:
        return int(self.typical_max.numel())

    def to_tensors(self) -> dict[str, Tensor]:
        counts = torch.tensor([self.n_texts, self.n_tokens])
        return {"typical_max": self.typical_max, "mean": self.mean, "frequency": self.frequency, "counts": counts}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> FeatureStats:
        n_texts, n_tokens = (int(v) for v in tensors["counts"])
        return cls(tensors["typical_max"], tensors["mean"], tensors["frequency"], n_texts, n_tokens)


def stats_from_per_token(per_token: PerTokenFeatures, top_texts: int = TOP_TEXTS) -> FeatureStats:
    """Statistics of features already extracted token by token."""
    n_tokens = int(per_token.text_row_start[-1])
    if n_tokens == 0:
        raise ValueError("The sample has no tokens to measure features on.")
    text_max = per_token.pool("max")  # [n_texts, d_sae]
    k = min(top_texts, per_token.n_texts)
    typical = text_max.topk(k, dim=0).values.mean(dim=0)
    total = torch.zeros(per_token.d_sae).index_add_(0, per_token.feature_idx, per_token.values.float())
    fired = torch.bincount(per_token.feature_idx, minlength=per_token.d_sae).float()
    return FeatureStats(
        typical_max=typical,
        mean=total / n_tokens,
        frequency=fired / n_tokens,
        n_texts=per_token.n_texts,
        n_tokens=n_tokens,
    )


def feature_stats(
    model: HookedTransformer,
    sae: SAE,
    texts: Sequence[str] | None = None,
    *,
    refresh: bool = False,
    root: str | Path | None = None,
) -> FeatureStats:
    """The SAE's :class:`FeatureStats` on ``texts`` (default: the labelled dataset), cached."""
    texts = list(load_dataset()["text"]) if texts is None else list(texts)
    folder = Path(root) if root is not None else cache_dir() / "feature_stats"
    ident = {"model": model_identity(model), "sae": sae_identity(sae), "texts": texts_digest(texts)}
    key = stable_hash({"version": STATS_VERSION, **ident})
    path = folder / f"{sae_hook_name(sae)}-{key}.safetensors"
    if path.is_file() and not refresh:
        try:
            return FeatureStats.from_tensors(load_file(str(path)))
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            log.warning("Recomputing unreadable feature statistics %s (%s)", path, err)
    hook = sae_hook_name(sae)
    per_token = cached_per_token(model, {hook: sae}, texts, refresh=refresh)[hook]
    stats = stats_from_per_token(per_token)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, stats.to_tensors())
    return stats
