"""Stable keys for caches: one hash helper, one way to digest texts, and one identity for a
model and for an SAE.

Every cache key in saelab (converted weights, dataset features, activation stores, model
samples, checkpoint folders) comes from :func:`stable_hash`, so they all use the same hash
and length. A model's identity covers its configuration, its tokenizer and *every*
parameter, so an activation store or a feature cache is never reused for other weights.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

KEY_LENGTH = 16
"""Hex digits of every key (64 bits)."""


def stable_hash(obj: Any) -> str:
    """A key for a JSON-serialisable object: the same on every machine and run."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def texts_digest(texts: Iterable[str]) -> str:
    """A key for a list of texts, in order. Each text is length-prefixed, so no two lists
    share a key by moving characters across a boundary."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:KEY_LENGTH]


def tensors_digest(tensors: Mapping[str, Tensor], *, prefix: str = "") -> str:
    """A key for named tensors: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256(prefix.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        # A contiguous CPU tensor exposes its memory directly: no copy of the bytes.
        array = tensor.contiguous().cpu().view(-1).view(torch.uint8).numpy()
        digest.update(array.data)
    return digest.hexdigest()[:KEY_LENGTH]


def file_digest(path: Path) -> str:
    """A key for a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:KEY_LENGTH]


# ---------------------------------------------------------------------------------------
# Model and SAE identity.

# Configuration fields that say how a model object is used, not what it computes: where it
# lives, whether it was built with random init before its weights were loaded, optional
# extra hooks. Two loads of the same weights differ here and must share one identity.
_RUNTIME_CONFIG_FIELDS = frozenset(
    {
        "device", "n_devices", "init_weights", "seed", "n_params", "initializer_range",
        "use_attn_result", "use_split_qkv_input", "use_hook_mlp_in", "use_attn_in", "use_hook_tokens",
        "checkpoint_index", "checkpoint_label_type", "checkpoint_value", "from_checkpoint",
        # Where the tokenizer was read from (a temporary folder, for a converted model); the
        # tokenizer itself is in the identity through its digest.
        "tokenizer_name",
    }
)  # fmt: skip

_identities: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def model_identity(model: HookedTransformer) -> str:
    """One key for a model: name, configuration (minus runtime fields), tokenizer and a
    digest of every parameter (about a second for 135M parameters on 2 CPU cores). Cached per model object
    until a parameter changes in place through autograd-visible ops (``param[...] = ...``,
    ``param.add_(...)``, an optimiser step); writes through ``param.data`` bypass the version
    counter, so call :func:`model_identity` on a fresh object after such surgery.
    """
    params = dict(model.named_parameters())
    # A parameter edited in place bumps its version counter, which invalidates the cache.
    state = tuple((name, p.data_ptr(), p._version) for name, p in params.items())
    cached = _identities.get(model)
    if cached is not None and cached[0] == state:
        return cached[1]
    ident = {
        "config": {k: str(v) for k, v in model.cfg.to_dict().items() if k not in _RUNTIME_CONFIG_FIELDS},
        "tokenizer": tokenizer_digest(model.tokenizer),
        "weights": tensors_digest(params),
    }
    key = stable_hash(ident)
    _identities[model] = (state, key)
    return key


def tokenizer_digest(tokenizer: Any) -> str | None:
    """A key for a tokenizer: its full serialised form (vocabulary, merges, normalisation,
    special tokens) when it is a fast tokenizer, else its class and vocabulary.

    Padding and truncation are left out: they are call-time settings, not what the tokenizer
    computes, and TransformerLens's ``to_tokens`` switches padding on, so hashing them made a
    model's identity depend on whether anything had been tokenized before it was taken.
    """
    if tokenizer is None:
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        serialised = json.loads(backend.to_str())
        serialised.pop("padding", None)
        serialised.pop("truncation", None)
        return stable_hash(serialised)
    return stable_hash([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])


def sae_identity(sae: SAE) -> str:
    """One key for an SAE: its hook and every tensor of its state dict."""
    hook = getattr(sae.cfg.metadata, "hook_name", None) or ""
    return tensors_digest(sae.state_dict(), prefix=hook)
