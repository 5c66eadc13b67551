"""What several store test files share: the hooks and the small layout of the test store, and
helpers that read its rows and batches."""

from __future__ import annotations

import torch

from saelab.store import StoreConfig
from tests._tiny_model import D_MODEL, TINY_MODEL_NAME

HOOKS = ("blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre")
ROW_BYTES = D_MODEL * 2  # one fp16 row of the tiny model's residual stream


def tiny_cfg(root, **overrides) -> StoreConfig:
    # 31 stored rows per 32-token sequence at most, 4 sequences per shard, ~5 shards.
    base = dict(
        hooks=HOOKS,
        seq_len=32,
        n_tokens=600,
        shard_tokens=124,
        model_batch_size=3,
        held_out_fraction=0.2,
        cache_root=str(root),
        model_name=TINY_MODEL_NAME,
    )
    return StoreConfig(**{**base, **overrides})


def row_set(rows: torch.Tensor) -> list[bytes]:
    return sorted(r.numpy().tobytes() for r in rows)


def epoch(store, **kw):
    kw = {"device": "cpu", **kw}
    return list(store.iter_batches(HOOKS[0], kw.pop("batch_size", 16), **kw))
