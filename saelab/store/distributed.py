"""Building one activation store with every rank of a torchrun job.

1. Rank 0 takes the folder's lock (so that no other job builds the same store meanwhile)
   and prepares the folder: it tokenizes the corpus and writes the token file and an
   incomplete manifest (or, resuming, lists the shards an earlier build finished).
2. Every rank reads that manifest and computes its own share of the missing shards (shard
   ``i`` of the missing list goes to rank ``i mod world_size``), writing each shard's files
   and then its record (:mod:`saelab.store.shards`). Ranks never write the manifest.
3. Once every rank has finished (a barrier, with the job's timeout), rank 0 lists all
   shards in the manifest and marks it complete.

The shards are the single-process build's, computed by the same function over the same
sequences, so the store is the same by key and content. A rank that dies leaves records
for its finished shards only, and no complete manifest: the others fail at the barrier, and
the next build, with any number of ranks, resumes from the records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.distributed.replicas import whole_world
from saelab.store.config import StoreConfig
from saelab.store.manifest import exclusive, write_manifest
from saelab.store.shards import fill, finish, missing_shards, valid_shards

if TYPE_CHECKING:
    from saelab.distributed.world import World

log = logging.getLogger(__name__)


def build_across(
    path: Path,
    key: str,
    world: World,
    prepare: Callable[[], dict[str, Any]],
    model: HookedTransformer,
    cfg: StoreConfig,
    progress: bool,
) -> None:
    """Fill the store at ``path`` with every rank of ``world``; ``prepare`` (run on rank 0
    under the folder's lock) returns the manifest to build from."""
    # Ranks whose model, corpus or settings differ would wait on each other's folders.
    whole_world(world).agree(key, "the activation store's key (model weights, corpus and StoreConfig)")
    # Rank 0 holds the folder's lock for the whole build, as a single-process build does.
    with exclusive(path) if world.is_main else contextlib.nullcontext():
        if world.is_main:
            write_manifest(path, prepare())  # with the shards earlier builds finished
        world.barrier()  # the token file and the manifest exist from here on
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("complete"):
            return
        _fill_share(path, manifest, world, model, cfg, progress)


def _fill_share(
    path: Path, manifest: dict[str, Any], world: World, model: HookedTransformer, cfg: StoreConfig, progress: bool
) -> None:
    """Compute this rank's share of the missing shards; rank 0 then completes the manifest."""
    todo = missing_shards(manifest)
    mine = todo[world.rank :: world.world_size]
    log.info("Rank %d computes %d of the %d missing shard(s)", world.rank, len(mine), len(todo))
    start = time.perf_counter()
    # Rank 0 shows its own rows and rate; the others' progress is not visible to it.
    desc = f"activations x{len(cfg.hooks)} hooks, rank 0 of {world.world_size}"
    with tqdm(unit="tok", unit_scale=True, desc=desc, disable=not (progress and world.is_main)) as bar:
        rows = fill(path, manifest, model, cfg, mine, bar, lambda entry: None)
    log.info("Rank %d wrote %d rows in %.1f s", world.rank, rows, time.perf_counter() - start)
    world.barrier()  # every shard is on disk (or a rank failed, and this raises)
    if world.is_main:
        manifest["shards"] = valid_shards(path, manifest)
        computed = set(todo)
        new_rows = sum(s["n_rows"] for s in manifest["shards"] if s["index"] in computed)
        finish(path, manifest, new_rows, time.perf_counter() - start)
    world.barrier()  # nobody opens the store before the manifest says it is complete
