"""Computing and writing a store's shards, and the record each finished shard leaves.

A shard is whole sequences ``[seq_start, seq_end)``: their kept positions' activations at
every hook, one file per hook. Its files are written first (atomically), then its record,
``done/shard_NNNNN.json``, which holds the shard's manifest entry. So a record never claims
a shard whose files are incomplete, whichever process wrote it, and a build that resumes
(in one process or several) can trust every record whose files are there.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_save_tensors, atomic_write_text
from saelab.extract.hooks import run_hooks
from saelab.store.config import StoreConfig
from saelab.store.manifest import read_tokens, write_manifest
from saelab.store.pack import keep_mask

log = logging.getLogger(__name__)

RECORDS = "done"
"""Folder of the shard records."""


class Progress(Protocol):
    """Anything with tqdm's ``update``."""

    def update(self, n: int) -> object: ...


def n_shards(manifest: dict[str, Any]) -> int:
    return math.ceil(manifest["n_seq"] / manifest["seqs_per_shard"])


def missing_shards(manifest: dict[str, Any]) -> list[int]:
    """Indices of the shards the manifest does not list yet, ascending."""
    done = {s["index"] for s in manifest["shards"]}
    return [i for i in range(n_shards(manifest)) if i not in done]


def valid_shards(path: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The shard entries of the manifest and of the records whose files all exist, by index."""
    entries = {s["index"]: s for s in manifest["shards"]}
    folder = path / RECORDS
    for record in sorted(folder.glob("shard_*.json")) if folder.is_dir() else []:
        entry = json.loads(record.read_text())
        entries.setdefault(entry["index"], entry)
    return [entries[i] for i in sorted(entries) if all((path / f).is_file() for f in entries[i]["files"].values())]


def remove_records(path: Path) -> None:
    """Delete the records once the manifest lists their shards and says it is complete."""
    folder = path / RECORDS
    for record in folder.glob("*.json") if folder.is_dir() else []:
        record.unlink(missing_ok=True)
    if folder.is_dir():
        folder.rmdir()


def fill(
    path: Path,
    manifest: dict[str, Any],
    model: HookedTransformer,
    cfg: StoreConfig,
    indices: Iterable[int],
    bar: Progress,
    on_written: Callable[[dict[str, Any]], None],
) -> int:
    """Compute and write the shards ``indices``; call ``on_written`` with each one's manifest
    entry once its files and record are on disk. Returns the rows written."""
    tokens = read_tokens(path, manifest)
    if tokens is None:
        raise ValueError(f"The token file of {path} vanished during the build; run build_store again.")
    mask = keep_mask(tokens, cfg.exclude_bos, manifest["excluded_token_ids"])
    per_shard, rows = manifest["seqs_per_shard"], 0
    for index in indices:
        lo, hi = index * per_shard, min((index + 1) * per_shard, manifest["n_seq"])
        acts = shard_activations(model, tokens[lo:hi], mask[lo:hi], cfg, bar)
        entry = write_shard(path, index, lo, hi, acts)
        (path / RECORDS).mkdir(exist_ok=True)
        atomic_write_text(path / RECORDS / f"shard_{index:05d}.json", json.dumps(entry))
        on_written(entry)
        rows += entry["n_rows"]
    return rows


def shard_activations(
    model: HookedTransformer,
    tokens: Int[Tensor, "seq pos"],
    mask: Bool[Tensor, "seq pos"],
    cfg: StoreConfig,
    bar: Progress,
) -> dict[str, Tensor]:
    """Kept positions' activations at every hook, ``[rows, d_in]`` in the store dtype (CPU)."""
    dtype = getattr(torch, cfg.dtype)
    n_rows = int(mask.sum())
    out: dict[str, Tensor] = {}
    row = 0
    for start in range(0, tokens.shape[0], cfg.model_batch_size):
        batch_mask = mask[start : start + cfg.model_batch_size]
        acts = run_hooks(model, cfg.hooks, tokens[start : start + cfg.model_batch_size])
        n = int(batch_mask.sum())
        for hook, act_BPD in acts.items():
            if hook not in out:
                out[hook] = torch.empty((n_rows, act_BPD.shape[-1]), dtype=dtype)
            kept_ND = act_BPD[batch_mask.to(act_BPD.device)].to(dtype)
            if not torch.isfinite(kept_ND).all():
                raise FloatingPointError(
                    f"Activations at {hook} overflow {cfg.dtype}; build with "
                    "StoreConfig(dtype='bfloat16') or dtype='float32'."
                )
            out[hook][row : row + n] = kept_ND.cpu()
        row += n
        bar.update(n)
    return out


def write_shard(path: Path, index: int, lo: int, hi: int, acts: dict[str, Tensor]) -> dict[str, Any]:
    """Write one shard's files (one per hook) atomically; returns its manifest entry."""
    files = {}
    for hook, rows_ND in acts.items():
        rel = f"{hook}/shard_{index:05d}.safetensors"
        (path / hook).mkdir(exist_ok=True)
        atomic_save_tensors(path / rel, {"acts": rows_ND.contiguous()})
        files[hook] = rel
    n_rows = next(iter(acts.values())).shape[0]
    return {"index": index, "seq_start": lo, "seq_end": hi, "n_rows": n_rows, "files": files}


def progress_bar(manifest: dict[str, Any], cfg: StoreConfig, progress: bool) -> tqdm:
    """A bar over the store's rows, starting at those already written."""
    return tqdm(
        total=manifest["n_rows"],
        initial=sum(s["n_rows"] for s in manifest["shards"]),
        unit="tok",
        unit_scale=True,
        desc=f"activations x{len(cfg.hooks)} hooks",
        disable=not progress,
    )


def finish(path: Path, manifest: dict[str, Any], new_rows: int, seconds: float) -> None:
    """Mark the build complete (every shard listed) and drop the shard records."""
    missing = missing_shards(manifest)
    if missing:
        raise RuntimeError(f"Cannot complete {path}: shards {missing[:10]} were never written.")
    manifest["complete"] = True
    manifest["build"] = {"seconds": round(seconds, 3), "tokens_per_s": round(new_rows / max(seconds, 1e-9), 1)}
    write_manifest(path, manifest)
    remove_records(path)
    log.info("Activation store %s complete: %d rows x %d hooks", path, manifest["n_rows"], len(manifest["d_in"]))
