"""Building an activation store: a corpus's model activations at several hooks, sharded on disk.

Build once, train many times::

    store = build_store(model, CorpusConfig(), StoreConfig(hooks=("blocks.15.hook_resid_pre",
                        "blocks.20.hook_resid_pre"), n_tokens=2_000_000))
    for acts in store.iter_batches("blocks.20.hook_resid_pre", 4096, seed=0):  # [4096, d_in] fp32
        ...

How it works:

* **Tokens.** Documents are tokenized and packed end to end, each followed by a separator
  (the tokenizer's EOS), into rows of ``seq_len`` tokens that start with BOS (SAELens does
  the same). Packing wastes no compute on padding, which matters with thousands of
  fortune-sized documents; a context may span documents, as in pretraining.
* **Which positions are stored.** Position 0 (BOS) is never stored when ``exclude_bos``:
  its norm is far above the others' (an attention sink; docs/library.md gives SmolLM2's ratio).
  Special tokens inside a row are skipped when ``exclude_special``: SmolLM2's
  ``<|endoftext|>`` mid-row is another attention sink. So rows of the store are the kept (sequence, position)
  pairs in row-major order; :meth:`ActivationStore.row_positions` maps them back.
* **One pass, several hooks.** Each batch of sequences runs once with ``stop_at_layer`` at
  the deepest hook's need; every hook is read from that pass.
* **On disk.** ``tokens.safetensors`` (all token ids), one ``<hook>/shard_NNNNN.safetensors``
  per hook and shard (fp16 by default), and ``manifest.json`` (configuration, cache key,
  shapes, shards, completion). Every file is written to a temporary name and renamed, and the
  manifest is rewritten after each shard, so an interrupted build resumes after the last
  complete shard and a reader never sees half a file.
* **Reuse.** The folder name is a cache key over everything that decides the content: the
  model, hooks, sequence length, token count, shard layout, dtype, exclusions, the corpus
  (:func:`saelab.corpus.corpus_fingerprint` or a hash of the given texts) and
  :data:`STORE_VERSION`. A complete store with the same key is returned without running the
  model.
* **Held-out split.** The last ``held_out_fraction`` of sequences is reserved for
  evaluation and never served by ``iter_batches(split="train")``. The split decides serving,
  not content, so it is not part of the key.
"""


from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_save_tensors
from saelab._util.keys import model_identity, stable_hash, texts_digest
from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.mix import corpus_fingerprint, iter_tagged_documents, labelled_ids_in_corpus
from saelab.extract.hooks import run_hooks
from saelab.extract.tokens import bos_token_id, tokenizer_of
from saelab.store.config import STORE_FORMAT, STORE_VERSION, StoreConfig
from saelab.store.distributed import build_across
from saelab.store.manifest import exclusive, is_complete, read_tokens, tokens_digest, write_manifest
from saelab.store.pack import keep_mask, pack_rows, take_sequences
from saelab.store.reader import ActivationStore
from saelab.store.shards import fill, finish, missing_shards, progress_bar, valid_shards

if TYPE_CHECKING:
    from saelab.distributed.world import World

log = logging.getLogger(__name__)


def build_store(
    model: HookedTransformer,
    corpus: CorpusConfig | Sequence[str],
    store_cfg: StoreConfig,
    progress: bool = True,
    world: World | None = None,
) -> ActivationStore:
    """Build (or reuse, or resume) the activation store for ``model`` on ``corpus``.

    ``corpus`` is a :class:`~saelab.corpus.CorpusConfig` or a list of texts. A complete store
    with the same cache key is returned as is; an interrupted one continues with the shards
    it lacks. With ``world`` (a torchrun job, :func:`saelab.distributed.join`) every rank
    computes its own share of the shards: :mod:`saelab.store.distributed`. The result is
    the same store, by key and content, as one process builds.
    """
    _check_model(model, store_cfg)
    key = store_key(model, corpus, store_cfg)
    path = _folder(store_cfg, key)
    if world is not None and world.world_size > 1:
        # Every rank goes in, even when the store is complete: the ranks decide that together.
        prepare = lambda: _prepare(path, key, model, corpus, store_cfg)  # noqa: E731
        build_across(path, key, world, prepare, model, store_cfg, progress)
    elif is_complete(path):
        log.info("Reusing activation store %s", path)
    else:
        with exclusive(path):
            manifest = _prepare(path, key, model, corpus, store_cfg)
            if not manifest.get("complete"):
                _fill_shards(path, manifest, model, store_cfg, progress)
    return ActivationStore.open(path, held_out_fraction=store_cfg.held_out_fraction)


def _prepare(
    path: Path, key: str, model: HookedTransformer, corpus: CorpusConfig | Sequence[str], cfg: StoreConfig
) -> dict[str, Any]:
    """The manifest to build from: the complete one when another process finished the store
    meanwhile, an interrupted build's (its finished shards kept), or a fresh one."""
    if is_complete(path):
        return json.loads((path / "manifest.json").read_text())
    _remove_temporaries(path)
    return _resume_or_start(path, key, model, corpus, cfg)


def store_path(model: HookedTransformer, corpus: CorpusConfig | Sequence[str], store_cfg: StoreConfig) -> Path:
    """Where the store for this model, corpus and configuration lives (built or not)."""
    return _folder(store_cfg, store_key(model, corpus, store_cfg))


def _folder(store_cfg: StoreConfig, key: str) -> Path:
    return store_cfg.root / f"{_slug(store_cfg.model_name)}-{key}"


def store_key(model: HookedTransformer, corpus: CorpusConfig | Sequence[str], store_cfg: StoreConfig) -> str:
    """Hash of everything that decides the store's content."""
    ident = {
        "version": STORE_VERSION,
        "store": store_cfg.content_dict(),
        "model": _model_identity(model),
        "corpus": _corpus_identity(corpus),
    }
    return stable_hash(ident)


def _model_identity(model: HookedTransformer) -> dict[str, Any]:
    """The model's one identity (weights included), with its name and shape for a reader."""
    cfg = model.cfg
    return {
        "name": cfg.model_name,
        "identity": model_identity(model),
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
    }


def _corpus_identity(corpus: CorpusConfig | Sequence[str]) -> dict[str, Any]:
    if isinstance(corpus, CorpusConfig):
        return {"kind": "config", "fingerprint": corpus_fingerprint(corpus)}
    texts = _validate_docs(corpus)
    return {"kind": "texts", "n_docs": len(texts), "digest": texts_digest(texts)}


def _validate_docs(corpus: Any) -> list[str]:
    if isinstance(corpus, str):
        raise TypeError("corpus must be a CorpusConfig or a list of texts, not a single string; wrap it: [text]")
    if not isinstance(corpus, Sequence):
        raise TypeError(
            f"corpus must be a CorpusConfig or a list of texts, got {type(corpus).__name__} "
            "(materialise an iterator with list(...) so it can be hashed for the cache key)"
        )
    texts = list(corpus)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("corpus must be a non-empty list of strings")
    return texts


def _check_model(model: HookedTransformer, cfg: StoreConfig) -> None:
    if model.cfg.model_name != cfg.model_name:
        raise ValueError(
            f"StoreConfig.model_name is {cfg.model_name!r} but the model is {model.cfg.model_name!r}; "
            "set model_name to the model you pass."
        )
    missing = [h for h in cfg.hooks if h not in model.hook_dict]
    if missing:
        examples = [h for h in model.hook_dict if "resid" in h][:4]
        raise ValueError(
            f"Hooks {missing} do not exist in {model.cfg.model_name!r}. Examples of valid hooks: {examples}"
        )
    if cfg.seq_len > model.cfg.n_ctx:
        raise ValueError(f"seq_len={cfg.seq_len} exceeds the model's context of {model.cfg.n_ctx} tokens")
    tokenizer_of(model)  # a clear error now, before any work, when there is none


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _remove_temporaries(path: Path) -> None:
    for tmp in path.rglob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def _resume_or_start(
    path: Path, key: str, model: HookedTransformer, corpus: CorpusConfig | Sequence[str], cfg: StoreConfig
) -> dict[str, Any]:
    """The manifest of an interrupted build (its valid shards kept), or a fresh one."""
    manifest_path = path / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        tokens = read_tokens(path, manifest)
        if tokens is not None:
            # Shards finished by any process of an earlier build, one or several.
            manifest["shards"] = valid_shards(path, manifest)
            log.info("Resuming activation store %s with %d complete shard(s)", path, len(manifest["shards"]))
            return manifest
        log.warning("Token file of %s is missing or corrupt; starting the build over", path)
    return _start(path, key, model, corpus, cfg)


def _start(
    path: Path, key: str, model: HookedTransformer, corpus: CorpusConfig | Sequence[str], cfg: StoreConfig
) -> dict[str, Any]:
    """Tokenize the corpus, write the token file and a manifest with no shards yet."""
    tokenizer = tokenizer_of(model)
    bos = bos_token_id(model)
    eos = tokenizer.eos_token_id
    sep = eos if isinstance(eos, int) else bos
    excluded = sorted(set(tokenizer.all_special_ids)) if cfg.exclude_special else []
    if isinstance(corpus, CorpusConfig):
        docs: Iterable[Document] = iter_tagged_documents(corpus, tokenizer, model=model)
        # Labelled texts the mix may contain: evaluation on the labelled set should skip them.
        corpus_info: dict[str, Any] = {"config": corpus.to_dict(), "labelled_ids": labelled_ids_in_corpus(corpus)}
    else:
        docs = (Document(t, "docs", str(i)) for i, t in enumerate(_validate_docs(corpus)))
        corpus_info = {}
    used: Counter[str] = Counter()
    tokens = take_sequences(pack_rows(docs, tokenizer, cfg.seq_len, bos, sep, used), cfg, excluded)
    n_seq = tokens.shape[0]
    mask = keep_mask(tokens, cfg.exclude_bos, excluded)
    tokens_file = "tokens.safetensors"
    atomic_save_tensors(path / tokens_file, {"tokens": tokens.to(torch.int32)})
    manifest = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "key": key,
        "complete": False,
        "config": cfg.to_dict(),
        "model": _model_identity(model),
        "corpus": {**_corpus_identity(corpus), **corpus_info, "tokens_by_source": dict(sorted(used.items()))},
        "bos_id": bos,
        "sep_id": sep,
        "excluded_token_ids": excluded,
        "seq_len": cfg.seq_len,
        "n_seq": n_seq,
        "n_rows": int(mask.sum()),
        "dtype": cfg.dtype,
        "d_in": _hook_widths(model, cfg.hooks),
        "tokens_file": tokens_file,
        "tokens_digest": tokens_digest(tokens),
        "seqs_per_shard": max(1, cfg.shard_tokens // max(1, cfg.seq_len - int(cfg.exclude_bos))),
        "shards": [],
    }
    write_manifest(path, manifest)
    return manifest


def _hook_widths(model: HookedTransformer, hooks: Sequence[str]) -> dict[str, int]:
    """Width of each hook's activations, from one tiny forward pass (robust to any hook kind)."""
    acts = run_hooks(model, hooks, torch.zeros((1, 2), dtype=torch.long))
    bad = [h for h, a in acts.items() if a.ndim != 3]
    if bad:
        raise ValueError(
            f"Hooks {bad} do not give [batch, pos, d] activations (attention patterns, per-head "
            "values); store residual, MLP or attention outputs."
        )
    return {h: int(a.shape[-1]) for h, a in acts.items()}


def _fill_shards(
    path: Path, manifest: dict[str, Any], model: HookedTransformer, cfg: StoreConfig, progress: bool
) -> None:
    """Compute and write every shard the manifest does not list yet, then mark it complete."""
    start = time.perf_counter()

    def written(entry: dict[str, Any]) -> None:
        manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda s: s["index"])
        write_manifest(path, manifest)

    with progress_bar(manifest, cfg, progress) as bar:
        new_rows = fill(path, manifest, model, cfg, missing_shards(manifest), bar, written)
    finish(path, manifest, new_rows, time.perf_counter() - start)
