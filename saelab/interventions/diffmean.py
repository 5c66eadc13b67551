"""DiffMean steering vectors: the difference of mean residuals, a category against the rest.

AxBench (Wu et al. 2025) found this one-line supervised baseline far ahead of plain SAE
steering, so every SAE result here stands beside it. At each hook, a text's residual is
averaged over its tokens (BOS left out: its norm is about 100x the others'), then texts are
averaged within the category and within the rest, so one long text cannot set a vector.
Strength 1 adds the vector as it is: the mean shift from "the rest" to the category.

One forward pass over the labelled texts serves every hook and category, and the per-text
means are cached on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_save_tensors
from saelab._util.keys import model_identity, stable_hash, texts_digest
from saelab._util.paths import cache_dir
from saelab.extract.batches import iter_batches
from saelab.extract.hooks import run_hooks
from saelab.extract.tokens import Tokenized, tokenize

log = logging.getLogger(__name__)

MAX_TOKENS = 128
"""Tokens per text that count (BOS included): the labelled texts' first 128 tokens hold
most of them, and it bounds the pass."""
DIFFMEAN_VERSION = 1


@dataclass(frozen=True)
class DiffMeanVectors:
    """Per-text mean residuals at some hooks, and the category vectors they give."""

    text_means: dict[str, Float[Tensor, "n_texts d_model"]]
    labels: list[str]

    @property
    def hooks(self) -> list[str]:
        return list(self.text_means)

    def vector(self, category: str, hook: str) -> Float[Tensor, " d_model"]:
        """Mean over ``category``'s texts minus mean over the others', at ``hook``."""
        if hook not in self.text_means:
            raise ValueError(f"no DiffMean vectors at {hook!r}; computed at {self.hooks}")
        members = torch.tensor([label == category for label in self.labels])
        n_in = int(members.sum())
        if n_in < 2 or int((~members).sum()) < 2:
            raise ValueError(
                f"DiffMean needs at least 2 texts of {category!r} and 2 others, got {n_in} and {int((~members).sum())}"
            )
        means = self.text_means[hook]
        return means[members].mean(0) - means[~members].mean(0)


def diffmean_vectors(
    model: HookedTransformer,
    hooks: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    batch_size: int = 16,
    refresh: bool = False,
    root: str | Path | None = None,
    progress: bool = True,
) -> DiffMeanVectors:
    """Per-text mean residuals of ``texts`` at ``hooks`` (cached), for DiffMean vectors."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not hooks:
        raise ValueError("DiffMean needs at least one hook")
    folder = Path(root) if root is not None else cache_dir() / "diffmean"
    key = stable_hash({"version": DIFFMEAN_VERSION, "model": model_identity(model), "texts": texts_digest(texts),
                       "hooks": sorted(hooks), "max_tokens": MAX_TOKENS})  # fmt: skip
    path = folder / f"{key}.safetensors"
    if path.is_file() and not refresh:
        try:
            stored = load_file(str(path))
            return DiffMeanVectors({h: stored[h] for h in hooks}, list(labels))
        except (SafetensorError, OSError, KeyError) as err:
            log.warning("Recomputing unreadable DiffMean means %s (%s)", path, err)
    means = _text_means(model, list(hooks), list(texts), batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, means)
    return DiffMeanVectors(means, list(labels))


def _text_means(
    model: HookedTransformer, hooks: list[str], texts: list[str], batch_size: int, progress: bool
) -> dict[str, Tensor]:
    full = tokenize(model, texts)
    # Cut here, not with tokenize's max_length: a short prefix is the intent, not a truncation to warn about.
    tokenized = Tokenized(ids=[ids[:MAX_TOKENS] for ids in full.ids], has_bos=full.has_bos, truncated=[])
    out = {h: torch.zeros(len(texts), model.cfg.d_model) for h in hooks}
    batches = list(iter_batches(tokenized, batch_size, "right", True, model.cfg.d_model))
    for batch in tqdm(batches, desc="DiffMean residuals", disable=not progress, leave=False):
        acts = run_hooks(model, hooks, batch.tokens, batch.attention_mask)
        weight = batch.pool_mask.float()
        count = weight.sum(1, keepdim=True).clamp_min(1)
        for hook, act in acts.items():
            mean = (act.float().cpu() * weight[..., None]).sum(1) / count
            out[hook][batch.index] = mean
    return out
