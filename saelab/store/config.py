"""What an activation store holds and how it is laid out on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from saelab._util.config import JsonConfig
from saelab._util.paths import cache_dir

STORE_VERSION = 2
"""Bump when the on-disk format or what is stored changes; old stores are then not reused."""
STORE_FORMAT = "saelab-activation-store"

StoreDtype = Literal["float16", "bfloat16", "float32"]
STORE_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
Split = Literal["train", "held_out", "all"]
SPLITS: tuple[str, ...] = ("train", "held_out", "all")

DEFAULT_MEMORY_BUDGET = 1 << 30
"""Default bound on the shuffle buffer of :meth:`ActivationStore.iter_batches` (1 GiB)."""


@dataclass(frozen=True)
class StoreConfig(JsonConfig):
    """What an activation store holds and how it is laid out on disk."""

    model_name: str = "smollm2-135m"
    """Name of the model the activations come from (checked against the model passed in)."""
    hooks: tuple[str, ...] = ("blocks.20.hook_resid_pre",)
    """TransformerLens hook names, all filled from one forward pass."""
    seq_len: int = 128
    """Tokens per sequence, BOS included."""
    n_tokens: int = 1_000_000
    """Activation rows to store per hook (train + held-out; BOS and separators not counted).
    The last sequence is kept whole, so the store may hold up to ``seq_len`` more."""
    shard_tokens: int = 65_536
    """Approximate rows per shard file (whole sequences per shard). A shard is the unit of
    resuming and of loading into the shuffle buffer."""
    dtype: StoreDtype = "float16"
    """On-disk dtype. fp16 halves the disk of fp32; residual values stay far below its range
    once BOS is excluded, for SmolLM2 and GPT-2 (a non-finite value aborts the build; Gemma needs
    bfloat16: :func:`saelab.train.pipeline.store_dtype_for`)."""
    model_batch_size: int = 32
    """Sequences per forward pass while building (memory vs speed; changes content only by
    float rounding, so it is not part of the cache key)."""
    exclude_bos: bool = True
    """Never store position 0 (the BOS); its activation norm is far above the others' (an attention sink)."""
    exclude_special: bool = True
    """Never store positions after the first that hold a special token (the document
    separators, a stray BOS or EOS); SmolLM2's ``<|endoftext|>`` mid-row is an attention sink."""
    held_out_fraction: float = 0.05
    """Share of sequences (the last ones) reserved for evaluation. Not part of the cache key."""
    cache_root: str | None = None
    """Folder holding stores; None means ``saelab.paths.cache_dir() / "activations"``."""

    def __post_init__(self) -> None:
        hooks = (self.hooks,) if isinstance(self.hooks, str) else tuple(self.hooks)
        object.__setattr__(self, "hooks", hooks)
        self.raise_problems(_config_problems(self))

    @property
    def root(self) -> Path:
        """The folder holding stores."""
        return Path(self.cache_root) if self.cache_root else cache_dir() / "activations"

    def content_dict(self) -> dict[str, Any]:
        """The fields that decide what the store holds (the cache key's share of the config)."""
        out = self.to_dict()
        for name in ("model_batch_size", "held_out_fraction", "cache_root"):
            out.pop(name)
        out["hooks"] = sorted(self.hooks)
        return out


def _config_problems(cfg: StoreConfig) -> list[str]:
    out = []
    if not cfg.hooks or not all(isinstance(h, str) and h for h in cfg.hooks):
        out.append(f"hooks must be a non-empty list of hook names, got {cfg.hooks!r}")
    elif len(set(cfg.hooks)) != len(cfg.hooks):
        out.append(f"hooks has duplicates: {list(cfg.hooks)}")
    for name in ("seq_len", "n_tokens", "shard_tokens", "model_batch_size"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            out.append(f"{name} must be a positive integer, got {value!r}")
    if isinstance(cfg.seq_len, int) and cfg.seq_len < 2:
        out.append(f"seq_len must be at least 2 (BOS + one token), got {cfg.seq_len}")
    if cfg.dtype not in STORE_DTYPES:
        out.append(f"dtype must be one of {list(STORE_DTYPES)}, got {cfg.dtype!r}")
    if not 0.0 <= cfg.held_out_fraction < 1.0:
        out.append(f"held_out_fraction must be in [0, 1), got {cfg.held_out_fraction}")
    return out
