"""The model's activations of a list of texts at a hook, kept on disk for the next SAE.

Several notebooks read the same labelled texts at the same hooks through different SAEs:
notebook 01 runs the model once for the profile's four SAEs, notebook 04 then encodes the
texts with the SAE it trained, notebook 07's examples pass with the default hook's SAE.
:func:`~saelab.extract.cache.cached_per_token` caches each SAE's features; what another SAE
needs is the model's activations, so that pass keeps them too (:class:`ResidualWriter`,
while they fit :data:`MAX_ENTRY_MB`), and the next extraction or examples pass over the same
texts reads them here instead of running the model again.

An entry is one hook's activations at every real position of every text (BOS included, pads
not), exactly as the model gave them, keyed by the model's identity, the hook, the texts and
the tokenizer's cut (``max_length``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_save_tensors
from saelab._util.keys import model_identity, stable_hash, texts_digest
from saelab.extract.tokens import Tokenized

log = logging.getLogger(__name__)

MAX_ENTRY_MB = 256
"""Largest entry kept, per hook (the labelled set, ~23k tokens, is ~52 MB at SmolLM2's
width); larger text lists are not cached."""


class TextResiduals:
    """One hook's activations of a list of texts, packed: ``[n_tokens, d_model]`` rows, text
    ``i`` in rows ``offsets[i]:offsets[i + 1]``."""

    def __init__(self, packed: Float[Tensor, "n_tokens d_model"], offsets: Int[Tensor, " n_texts_plus_1"]) -> None:
        self.packed, self.offsets = packed, offsets

    @property
    def n_texts(self) -> int:
        return len(self.offsets) - 1

    def padded(self, index: Tensor, attention_mask: Tensor) -> Float[Tensor, "batch pos d_model"]:
        """The activations of texts ``index`` laid out as a batch with ``attention_mask``
        ``[batch, pos]`` (either padding side); zeros at the pads."""
        mask = attention_mask.bool().cpu()
        out = self.packed.new_zeros(*mask.shape, self.packed.shape[1])
        for row, text in enumerate(index.tolist()):
            lo, hi = int(self.offsets[text]), int(self.offsets[text + 1])
            if int(mask[row].sum()) != hi - lo:
                raise ValueError(f"text {text} has {hi - lo} cached positions but {int(mask[row].sum())} in the batch")
            out[row, mask[row]] = self.packed[lo:hi]
        return out.to(attention_mask.device)


def residuals_path(
    model: HookedTransformer, hook: str, texts: Sequence[str], max_length: int | None, root: Path
) -> Path:
    key = stable_hash(
        {"model": model_identity(model), "hook": hook, "texts": texts_digest(texts), "max_length": max_length}
    )
    return root / "residuals" / f"{hook}-{key}.safetensors"


def load_residuals(
    model: HookedTransformer, hook: str, texts: Sequence[str], max_length: int | None, root: Path
) -> TextResiduals | None:
    """The cached entry, or None when there is none (or it is unreadable: then it is recomputed)."""
    path = residuals_path(model, hook, texts, max_length, root)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            entry = TextResiduals(handle.get_tensor("packed"), handle.get_tensor("offsets"))
    except (OSError, SafetensorError, KeyError) as err:
        log.warning("Ignoring unreadable residual cache %s (%s)", path, err)
        return None
    return entry if entry.n_texts == len(texts) else None


class ResidualWriter:
    """Collects a pass's activations for the hooks that have no entry yet, batch by batch,
    and writes each hook's entry once every text has been seen."""

    def __init__(self, model: HookedTransformer, texts: Sequence[str], tokenized: Tokenized, hooks: Iterable[str],
                 root: Path, max_length: int | None = None) -> None:  # fmt: skip
        lengths = torch.tensor([len(ids) for ids in tokenized.ids])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        n_tokens, d_model = int(self.offsets[-1]), model.cfg.d_model
        fits = n_tokens * d_model * 4 <= MAX_ENTRY_MB * 2**20
        self.paths = {h: residuals_path(model, h, texts, max_length, root) for h in hooks} if fits else {}
        self.packed = {h: torch.empty(n_tokens, d_model) for h in self.paths}
        self.seen = torch.zeros(len(lengths), dtype=torch.bool)

    def add(self, index: Tensor, attention_mask: Tensor, acts: dict[str, Float[Tensor, "batch pos d_model"]]) -> None:
        """One batch: rows ``index`` of the text list, ``acts`` per hook at every position."""
        mask = attention_mask.bool().cpu()
        for hook, packed in self.packed.items():
            values = acts[hook].detach().float().cpu()
            for row, text in enumerate(index.tolist()):
                packed[int(self.offsets[text]) : int(self.offsets[text + 1])] = values[row, mask[row]]
        self.seen[index.cpu()] = True

    def finish(self) -> None:
        """Write the entries, if every text was seen (an interrupted pass writes nothing)."""
        if not bool(self.seen.all()):
            return
        for hook, path in self.paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_tensors(path, {"packed": self.packed[hook], "offsets": self.offsets})
