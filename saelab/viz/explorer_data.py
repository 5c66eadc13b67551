"""The data behind the feature explorer: per SAE, pooled and per-token features of one set
of labelled texts, computed once up front (from the feature cache when it has them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.cache import cached_per_token
from saelab.extract.extract import extract_per_token_multi
from saelab.extract.per_token import PerTokenFeatures


@dataclass(frozen=True)
class SAEActivations:
    """One SAE's features on the explorer's texts."""

    sae: SAE
    pooled: Float[Tensor, "n_texts d_sae"]
    """Pooled over each text's tokens (mean by default; see :meth:`ExplorerData.build`)."""
    per_token: PerTokenFeatures
    """The same texts, token by token (for highlighting and top examples)."""


@dataclass
class ExplorerData:
    """Everything :class:`FeatureExplorer` shows, computed once up front.

    ``saes`` maps a display name (e.g. "layer 20") to that SAE's activations on ``texts``;
    ``labels[i]`` is text i's category; ``model`` (optional) powers the logit lens.
    """

    texts: list[str]
    labels: list[str]
    saes: dict[str, SAEActivations]
    model: HookedTransformer | None = None

    def __post_init__(self) -> None:
        self.texts, self.labels = list(self.texts), [str(c) for c in self.labels]
        if not self.texts:
            raise ValueError("ExplorerData needs at least one text")
        if len(self.labels) != len(self.texts):
            raise ValueError(f"labels ({len(self.labels)}) must have one entry per text ({len(self.texts)})")
        if not self.saes:
            raise ValueError("ExplorerData needs at least one SAE in saes")
        for name, entry in self.saes.items():
            d_sae = int(entry.sae.cfg.d_sae)
            if tuple(entry.pooled.shape) != (len(self.texts), d_sae):
                raise ValueError(
                    f"{name!r}: pooled has shape {tuple(entry.pooled.shape)}, expected "
                    f"[n_texts={len(self.texts)}, d_sae={d_sae}]"
                )
            if entry.per_token.n_texts != len(self.texts) or entry.per_token.d_sae != d_sae:
                raise ValueError(
                    f"{name!r}: per_token covers {entry.per_token.n_texts} texts x {entry.per_token.d_sae} "
                    f"features, expected {len(self.texts)} x {d_sae}"
                )

    @property
    def names(self) -> list[str]:
        """The SAEs' display names, in order."""
        return list(self.saes)

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(self.labels))

    @classmethod
    def build(
        cls,
        model: HookedTransformer,
        saes: Mapping[str, SAE],
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        pooling: Literal["mean", "max", "sum"] = "mean",
        batch_size: int = 16,
        use_cache: bool = True,
        progress: bool | None = None,
    ) -> ExplorerData:
        """Per-token features of ``texts`` for every SAE (one model pass for all of them, or
        none when the feature cache already has them and ``use_cache``), pooled from the
        per-token ones (same masking: no pads, no BOS), so they equal
        ``extract_features(..., pooling=pooling)`` without a second model pass."""
        if len(labels) != len(texts):
            raise ValueError(f"labels ({len(labels)}) must have one entry per text ({len(texts)})")
        if use_cache:
            per_token = cached_per_token(model, saes, texts, batch_size=batch_size, progress=progress)
        else:
            per_token = extract_per_token_multi(model, saes, texts, batch_size=batch_size, progress=progress)
        return cls.from_per_token(saes, per_token, texts, labels, model=model, pooling=pooling)

    @classmethod
    def from_per_token(
        cls,
        saes: Mapping[str, SAE],
        per_token: Mapping[str, PerTokenFeatures],
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        model: HookedTransformer | None = None,
        pooling: Literal["mean", "max", "sum"] = "mean",
    ) -> ExplorerData:
        """From per-token features already at hand (e.g. from :func:`saelab.cached_per_token`)."""
        missing = [name for name in saes if name not in per_token]
        if missing:
            raise ValueError(f"per_token has no entry for {missing}; give one per SAE")
        entries = {
            name: SAEActivations(sae=sae, pooled=per_token[name].pool(pooling), per_token=per_token[name])
            for name, sae in saes.items()
        }
        return cls(texts=list(texts), labels=list(labels), saes=entries, model=model)
