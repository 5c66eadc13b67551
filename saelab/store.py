"""Activation store: a corpus's model activations at several hooks, sharded on disk.

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
  its norm is ~100x the others' (SmolLM2: ~25,000 against ~200 at layer 15). Special tokens
  inside a row are skipped when ``exclude_special``: SmolLM2's ``<|endoftext|>`` mid-row is
  another attention sink (~13,000). So rows of the store are the kept (sequence, position)
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

import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from safetensors import safe_open
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.corpus import (
    CorpusConfig,
    Document,
    corpus_fingerprint,
    encode,
    iter_tagged_documents,
    labelled_ids_in_corpus,
)
from saelab.atomic import atomic_save_tensors, atomic_write_text
from saelab.device import default_device
from saelab.extract import run_hooks
from saelab.paths import cache_dir

log = logging.getLogger(__name__)

STORE_VERSION = 1
"""Bump when the on-disk format or what is stored changes; old stores are then not reused."""
STORE_FORMAT = "saelab-activation-store"

StoreDtype = Literal["float16", "bfloat16", "float32"]
STORE_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
Split = Literal["train", "held_out", "all"]
SPLITS: tuple[str, ...] = ("train", "held_out", "all")

DEFAULT_MEMORY_BUDGET = 1 << 30
"""Default bound on the shuffle buffer of :meth:`ActivationStore.iter_batches` (1 GiB)."""
_READ_CHUNK_ROWS = 8192  # rows copied per read, so loading never holds a second full shard


@dataclass(frozen=True)
class StoreConfig:
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
    once BOS is excluded (a non-finite value aborts the build)."""
    model_batch_size: int = 32
    """Sequences per forward pass while building (memory vs speed; changes content only by
    float rounding, so it is not part of the cache key)."""
    exclude_bos: bool = True
    """Never store position 0 (the BOS); its activation norm is ~100x the others'."""
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
        problems = _config_problems(self)
        if problems:
            raise ValueError("Invalid StoreConfig: " + "; ".join(problems))

    @property
    def root(self) -> Path:
        return Path(self.cache_root) if self.cache_root else cache_dir() / "activations"

    def content_dict(self) -> dict[str, Any]:
        """The fields that decide what the store holds (the cache key's share of the config)."""
        out = self.to_dict()
        for name in ("model_batch_size", "held_out_fraction", "cache_root"):
            out.pop(name)
        out["hooks"] = sorted(self.hooks)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["hooks"] = list(self.hooks)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"Unknown StoreConfig field(s) {unknown}. Valid fields: {sorted(valid)}")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoreConfig:
        return cls.from_dict(json.loads(text))


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


# ---------------------------------------------------------------------------------------
# Tokenization: documents -> fixed-length rows.


def tokenize_corpus(
    docs: Iterable[str],
    tokenizer: Any,
    seq_len: int,
    bos_id: int | None,
    *,
    sep_id: int | None = None,
    n_seq: int | None = None,
) -> Int[Tensor, "n_seq seq_len"]:
    """Pack documents into rows of ``seq_len`` tokens: ``[BOS] + tokens``, each document
    followed by ``sep_id`` (None: the tokenizer's EOS; pass -1 for no separator).

    Takes ``n_seq`` rows (None: as many as the documents fill; a partial last row is dropped).
    """
    sep = _resolve_sep(tokenizer, sep_id)
    tagged = (Document(text, "docs", str(i)) for i, text in enumerate(docs))
    rows = []
    for row in _pack(tagged, tokenizer, seq_len, bos_id, sep, Counter()):
        rows.append(row)
        if n_seq is not None and len(rows) >= n_seq:
            break
    if n_seq is not None and len(rows) < n_seq:
        raise ValueError(f"The documents fill only {len(rows)} rows of {seq_len} tokens; {n_seq} were asked for.")
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), seq_len)


def _resolve_sep(tokenizer: Any, sep_id: int | None) -> int | None:
    if sep_id is None:
        return tokenizer.eos_token_id
    return None if sep_id < 0 else sep_id


def _pack(
    docs: Iterable[Document],
    tokenizer: Any,
    seq_len: int,
    bos_id: int | None,
    sep_id: int | None,
    used: Counter[str],
    batch_docs: int = 256,
) -> Iterator[list[int]]:
    """Rows of packed token ids; ``used`` counts the tokens each source put into them."""
    body = seq_len - (1 if bos_id is not None else 0)
    prefix = [bos_id] if bos_id is not None else []
    buffer: list[int] = []
    owners: deque[list[Any]] = deque()  # [source, n_tokens] runs aligned with the buffer
    for batch in _batched(docs, batch_docs):
        for doc, ids in zip(batch, encode(tokenizer, [d.text for d in batch])):
            piece = list(ids) + ([sep_id] if sep_id is not None else [])
            buffer.extend(piece)
            owners.append([doc.source, len(piece)])
            while len(buffer) >= body:
                _charge(owners, body, used)
                yield prefix + buffer[:body]
                del buffer[:body]


def _charge(owners: deque[list[Any]], n: int, used: Counter[str]) -> None:
    while n > 0:
        run = owners[0]
        take = min(n, run[1])
        used[run[0]] += take
        run[1] -= take
        n -= take
        if run[1] == 0:
            owners.popleft()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def keep_mask(
    tokens: Int[Tensor, "n_seq seq_len"], exclude_bos: bool, excluded_ids: Sequence[int]
) -> Bool[Tensor, "n_seq seq_len"]:
    """Positions whose activations are stored (row-major order gives the store's row order)."""
    mask = torch.ones(tokens.shape, dtype=torch.bool)
    if exclude_bos:
        mask[:, 0] = False
    if excluded_ids:
        # Position 0 is governed by exclude_bos alone.
        mask[:, 1:] &= ~torch.isin(tokens[:, 1:], torch.tensor(list(excluded_ids), dtype=tokens.dtype))
    return mask


# ---------------------------------------------------------------------------------------
# Building.


def build_store(
    model: HookedTransformer,
    corpus: CorpusConfig | Sequence[str],
    store_cfg: StoreConfig,
    progress: bool = True,
) -> ActivationStore:
    """Build (or reuse, or resume) the activation store for ``model`` on ``corpus``.

    ``corpus`` is a :class:`~saelab.corpus.CorpusConfig` or a list of texts. A complete store
    with the same cache key is returned as is; an interrupted one continues after its last
    complete shard.
    """
    _check_model(model, store_cfg)
    key = store_key(model, corpus, store_cfg)
    path = _folder(store_cfg, key)
    if _is_complete(path):
        log.info("Reusing activation store %s", path)
        return ActivationStore.open(path, held_out_fraction=store_cfg.held_out_fraction)
    path.mkdir(parents=True, exist_ok=True)
    with _exclusive(path):
        if _is_complete(path):  # another process finished it while we waited
            return ActivationStore.open(path, held_out_fraction=store_cfg.held_out_fraction)
        _remove_temporaries(path)
        manifest = _resume_or_start(path, key, model, corpus, store_cfg)
        _fill_shards(path, manifest, model, store_cfg, progress)
    return ActivationStore.open(path, held_out_fraction=store_cfg.held_out_fraction)


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
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _model_identity(model: HookedTransformer) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "name": cfg.model_name,
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "d_vocab": cfg.d_vocab,
        "prepend_bos": bool(cfg.default_prepend_bos),
    }


def _corpus_identity(corpus: CorpusConfig | Sequence[str]) -> dict[str, Any]:
    if isinstance(corpus, CorpusConfig):
        return {"kind": "config", "fingerprint": corpus_fingerprint(corpus)}
    texts = _validate_docs(corpus)
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return {"kind": "texts", "n_docs": len(texts), "sha256": digest.hexdigest()}


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
    if model.tokenizer is None:
        raise ValueError("The model has no tokenizer attached; build_store needs one to tokenize the corpus.")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _is_complete(path: Path) -> bool:
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return False
    with contextlib.suppress(ValueError, OSError):
        return bool(json.loads(manifest.read_text()).get("complete"))
    return False


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store folder, so two processes never build one store."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, builds are still atomic per file
        yield
        return
    with open(path / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        tokens = _read_tokens(path, manifest)
        if tokens is not None:
            kept = []
            for shard in manifest["shards"]:
                if not all((path / f).is_file() for f in shard["files"].values()):
                    break
                kept.append(shard)
            manifest["shards"] = kept
            log.info("Resuming activation store %s after %d complete shard(s)", path, len(kept))
            return manifest
        log.warning("Token file of %s is missing or corrupt; starting the build over", path)
    return _start(path, key, model, corpus, cfg)


def _start(
    path: Path, key: str, model: HookedTransformer, corpus: CorpusConfig | Sequence[str], cfg: StoreConfig
) -> dict[str, Any]:
    """Tokenize the corpus, write the token file and a manifest with no shards yet."""
    tokenizer = model.tokenizer
    bos = tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    excluded = sorted(set(tokenizer.all_special_ids)) if cfg.exclude_special else []
    if isinstance(corpus, CorpusConfig):
        docs: Iterable[Document] = iter_tagged_documents(corpus, tokenizer, model=model)
        # Labelled texts the mix may contain: evaluation on the labelled set should skip them.
        corpus_info: dict[str, Any] = {"config": corpus.to_dict(), "labelled_ids": labelled_ids_in_corpus(corpus)}
    else:
        docs = (Document(t, "docs", str(i)) for i, t in enumerate(_validate_docs(corpus)))
        corpus_info = {}
    used: Counter[str] = Counter()
    tokens = _take_sequences(_pack(docs, tokenizer, cfg.seq_len, bos, sep, used), cfg, excluded)
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
        "tokens_sha256": _tensor_sha256(tokens),
        "seqs_per_shard": max(1, cfg.shard_tokens // max(1, cfg.seq_len - int(cfg.exclude_bos))),
        "shards": [],
    }
    _write_manifest(path, manifest)
    return manifest


def _take_sequences(rows: Iterator[list[int]], cfg: StoreConfig, excluded: list[int]) -> Int[Tensor, "n_seq seq_len"]:
    """Just enough packed rows to hold ``n_tokens`` stored positions."""
    taken, stored = [], 0
    excluded_set = set(excluded)
    for row in rows:
        taken.append(row)
        stored += int(not cfg.exclude_bos) + sum(1 for t in row[1:] if t not in excluded_set)
        if stored >= cfg.n_tokens:
            return torch.tensor(taken, dtype=torch.long)
    raise ValueError(
        f"The corpus filled only {len(taken)} sequences ({stored} storable tokens) but n_tokens={cfg.n_tokens}. "
        "Give more text (raise CorpusConfig.target_tokens) or lower StoreConfig.n_tokens."
    )


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
    tokens = _read_tokens(path, manifest)
    if tokens is None:
        raise ValueError(f"The token file of {path} vanished during the build; run build_store again.")
    mask = keep_mask(tokens, cfg.exclude_bos, manifest["excluded_token_ids"])
    per_shard = manifest["seqs_per_shard"]
    n_shards = math.ceil(manifest["n_seq"] / per_shard)
    done_rows = sum(s["n_rows"] for s in manifest["shards"])
    bar = tqdm(
        total=manifest["n_rows"],
        initial=done_rows,
        unit="tok",
        unit_scale=True,
        desc=f"activations x{len(cfg.hooks)} hooks",
        disable=not progress,
    )
    start, new_rows = time.perf_counter(), 0
    with bar:
        for index in range(len(manifest["shards"]), n_shards):
            lo, hi = index * per_shard, min((index + 1) * per_shard, manifest["n_seq"])
            acts = _shard_activations(model, tokens[lo:hi], mask[lo:hi], cfg, bar)
            manifest["shards"].append(_write_shard(path, index, lo, hi, acts))
            new_rows += manifest["shards"][-1]["n_rows"]
            _write_manifest(path, manifest)
    seconds = time.perf_counter() - start
    manifest["complete"] = True
    manifest["build"] = {"seconds": round(seconds, 3), "tokens_per_s": round(new_rows / max(seconds, 1e-9), 1)}
    _write_manifest(path, manifest)
    log.info("Activation store %s complete: %d rows x %d hooks", path, manifest["n_rows"], len(cfg.hooks))


def _shard_activations(
    model: HookedTransformer,
    tokens: Int[Tensor, "seq pos"],
    mask: Bool[Tensor, "seq pos"],
    cfg: StoreConfig,
    bar: tqdm,
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


def _write_shard(path: Path, index: int, lo: int, hi: int, acts: dict[str, Tensor]) -> dict[str, Any]:
    files = {}
    for hook, rows_ND in acts.items():
        rel = f"{hook}/shard_{index:05d}.safetensors"
        (path / hook).mkdir(exist_ok=True)
        atomic_save_tensors(path / rel, {"acts": rows_ND.contiguous()})
        files[hook] = rel
    n_rows = next(iter(acts.values())).shape[0]
    return {"index": index, "seq_start": lo, "seq_end": hi, "n_rows": n_rows, "files": files}


# ---------------------------------------------------------------------------------------
# Atomic files.


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(path / "manifest.json", json.dumps(manifest, indent=1))


def _read_tokens(path: Path, manifest: dict[str, Any]) -> Tensor | None:
    file = path / manifest["tokens_file"]
    if not file.is_file():
        return None
    with safe_open(str(file), framework="pt") as handle:
        tokens = handle.get_tensor("tokens").long()
    return tokens if _tensor_sha256(tokens) == manifest["tokens_sha256"] else None


def _tensor_sha256(tokens: Tensor) -> str:
    return hashlib.sha256(tokens.to(torch.int32).contiguous().numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------
# Reading.


class RowPositions(NamedTuple):
    """Where the store's rows come from: row ``r`` is position ``pos[r]`` of sequence ``seq[r]``."""

    seq: Int[Tensor, " rows"]
    pos: Int[Tensor, " rows"]


class _Range(NamedTuple):
    """Rows ``lo:hi`` of one shard file."""

    shard: int
    lo: int
    hi: int


class ActivationStore:
    """A complete activation store on disk. Open with :meth:`open` or get one from :func:`build_store`."""

    def __init__(self, path: Path, manifest: dict[str, Any], held_out_fraction: float | None = None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.config = StoreConfig.from_dict(manifest["config"])
        fraction = self.config.held_out_fraction if held_out_fraction is None else held_out_fraction
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"held_out_fraction must be in [0, 1), got {fraction}")
        self.held_out_fraction = float(fraction)
        n_seq = manifest["n_seq"]
        self.n_held_out_seq = min(n_seq - 1, math.ceil(n_seq * fraction)) if fraction > 0 else 0
        self._tokens: Tensor | None = None
        self._rows_per_seq: Tensor | None = None

    @classmethod
    def open(cls, path: str | Path, *, held_out_fraction: float | None = None) -> ActivationStore:
        """Open a built store; ``held_out_fraction`` overrides the one it was built with."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{path} is not an activation store (no manifest.json).")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise ValueError(
                f"{path} holds format {manifest.get('format')!r} version {manifest.get('version')!r}; this saelab "
                f"reads {STORE_FORMAT!r} version {STORE_VERSION}. Rebuild it with build_store."
            )
        if not manifest.get("complete"):
            raise ValueError(f"The activation store {path} is incomplete; run build_store again to resume it.")
        return cls(path, manifest, held_out_fraction)

    def __repr__(self) -> str:
        return (
            f"ActivationStore({self.path.name}: {self.n_rows('all')} rows x {list(self.hooks)}, "
            f"seq_len={self.seq_len}, {self.dtype}, held-out {self.n_held_out_seq}/{self.n_seq} sequences)"
        )

    # -- metadata ---------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.config.hooks

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    @property
    def n_seq(self) -> int:
        return self.manifest["n_seq"]

    @property
    def n_train_seq(self) -> int:
        return self.n_seq - self.n_held_out_seq

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.manifest["dtype"])

    @property
    def tokens_by_source(self) -> dict[str, int]:
        """Corpus tokens (separators included) each source contributed to the sequences."""
        return dict(self.manifest["corpus"]["tokens_by_source"])

    def d_in(self, hook: str) -> int:
        return self.manifest["d_in"][self._check_hook(hook)]

    def n_rows(self, split: Split = "train") -> int:
        return sum(r.hi - r.lo for r in self._ranges(split))

    # -- tokens -----------------------------------------------------------------------

    def tokens(self, split: Split = "all") -> Int[Tensor, "n_seq seq_len"]:
        """Token ids of the sequences (BOS included), e.g. for CE-loss evaluation on held-out text."""
        lo, hi = self._seq_range(split)
        return self._all_tokens()[lo:hi].clone()

    def keep_mask(self) -> Bool[Tensor, "n_seq seq_len"]:
        """Which (sequence, position) pairs have stored activations."""
        return keep_mask(self._all_tokens(), self.config.exclude_bos, self.manifest["excluded_token_ids"])

    def row_positions(self, split: Split = "all") -> RowPositions:
        """(sequence, position) of every row of ``split``, in storage order."""
        lo, hi = self._seq_range(split)
        seq, pos = self.keep_mask()[lo:hi].nonzero(as_tuple=True)
        return RowPositions(seq + lo, pos)

    # -- activations ------------------------------------------------------------------

    def load(
        self, hook: str, split: Split = "held_out", *, device: str | torch.device | None = None
    ) -> Float[Tensor, "rows d_in"]:
        """Every row of ``split`` in storage order, as fp32 on ``device`` (None: CUDA if
        present), e.g. for evaluation. It holds the whole split in memory."""
        ranges = self._ranges(split)
        buffer = torch.empty((sum(r.hi - r.lo for r in ranges), self.d_in(hook)), dtype=self.dtype)
        self._fill(buffer, hook, ranges)
        return buffer.to(device if device is not None else default_device()).float()

    def iter_batches(
        self,
        hook: str,
        batch_size: int,
        *,
        split: Split = "train",
        shuffle: bool = True,
        seed: int = 0,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        epochs: int | None = 1,
        start_batch: int = 0,
        drop_last: bool = False,
        device: str | torch.device | None = None,
    ) -> BatchIterator:
        """Batches of ``[batch_size, d_in]`` fp32 activations on ``device`` (None: CUDA if present).

        Shuffling within a memory budget: each epoch visits the shards in a seeded random
        order, loads consecutive shards into a buffer of at most ``memory_budget_bytes``
        (counted in the store dtype), permutes the buffer's rows and serves them. Every row of
        the split is served exactly once per epoch; the last batch of an epoch is smaller
        unless ``drop_last``. A batch therefore mixes rows from the shards in one buffer
        (plus fewer than ``batch_size`` rows left over from the previous buffer). Shards hold
        whole sequences, so a budget of B shards draws each batch from about
        ``B * seqs_per_shard`` sequences; with a budget of the whole split it is a uniform
        shuffle. The order is a pure function of ``seed``, the epoch and the buffer index, so
        ``start_batch=k`` (counted across epochs) yields exactly what a fresh iterator yields
        after its first ``k`` batches, loading only what those need.
        """
        return BatchIterator(
            self,
            self._check_hook(hook),
            batch_size,
            split=split,
            shuffle=shuffle,
            seed=seed,
            memory_budget_bytes=memory_budget_bytes,
            epochs=epochs,
            start_batch=start_batch,
            drop_last=drop_last,
            device=torch.device(device) if device is not None else default_device(),
        )

    def batches_per_epoch(self, batch_size: int, split: Split = "train", drop_last: bool = False) -> int:
        rows = self.n_rows(split)
        return rows // batch_size if drop_last else math.ceil(rows / batch_size)

    # -- internals --------------------------------------------------------------------

    def _check_hook(self, hook: str) -> str:
        if hook not in self.hooks:
            raise ValueError(f"Hook {hook!r} is not in this store; valid: {list(self.hooks)}")
        return hook

    def _all_tokens(self) -> Tensor:
        if self._tokens is None:
            tokens = _read_tokens(self.path, self.manifest)
            if tokens is None:
                file = self.path / self.manifest["tokens_file"]
                raise ValueError(f"{file} is missing or does not match the manifest; rebuild the store.")
            self._tokens = tokens
        return self._tokens

    def _seq_range(self, split: Split) -> tuple[int, int]:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; valid: {list(SPLITS)}")
        if split == "train":
            return 0, self.n_train_seq
        if split == "held_out":
            return self.n_train_seq, self.n_seq
        return 0, self.n_seq

    def _ranges(self, split: Split) -> list[_Range]:
        """Per shard, the rows of ``split`` (a prefix, a suffix or all of the shard)."""
        lo_seq, hi_seq = self._seq_range(split)
        if self._rows_per_seq is None:
            self._rows_per_seq = self.keep_mask().sum(dim=1)
        cum = torch.cat([torch.zeros(1, dtype=torch.long), self._rows_per_seq.cumsum(0)]).tolist()
        out = []
        for shard in self.manifest["shards"]:
            a, b = shard["seq_start"], shard["seq_end"]
            s, e = max(a, lo_seq), min(b, hi_seq)
            if s < e:
                out.append(_Range(shard["index"], cum[s] - cum[a], cum[e] - cum[a]))
        return out

    def _shard_file(self, hook: str, shard: int) -> Path:
        return self.path / self.manifest["shards"][shard]["files"][hook]

    def _fill(self, buffer: Tensor, hook: str, ranges: Sequence[_Range]) -> None:
        """Copy the rows of ``ranges`` into ``buffer`` in order, a chunk at a time."""
        offset = 0
        for rng in ranges:
            with safe_open(str(self._shard_file(hook, rng.shard)), framework="pt") as handle:
                rows = handle.get_slice("acts")
                for start in range(rng.lo, rng.hi, _READ_CHUNK_ROWS):
                    stop = min(start + _READ_CHUNK_ROWS, rng.hi)
                    buffer[offset : offset + stop - start] = rows[start:stop]
                    offset += stop - start


class BatchIterator(Iterator[Tensor]):
    """The iterator :meth:`ActivationStore.iter_batches` returns.

    ``position`` is the number of batches served so far, counted from the start of epoch 0
    (``start_batch`` included); save it with the seed to resume exactly.
    """

    def __init__(
        self,
        store: ActivationStore,
        hook: str,
        batch_size: int,
        *,
        split: Split,
        shuffle: bool,
        seed: int,
        memory_budget_bytes: int,
        epochs: int | None,
        start_batch: int,
        drop_last: bool,
        device: torch.device,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if epochs is not None and epochs < 0:
            raise ValueError(f"epochs must be >= 0 or None (forever), got {epochs}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.store, self.hook, self.batch_size, self.split = store, hook, batch_size, split
        self.shuffle, self.seed, self.epochs, self.drop_last, self.device = shuffle, seed, epochs, drop_last, device
        self.memory_budget_bytes = memory_budget_bytes
        self.ranges = store._ranges(split)
        self.batches_per_epoch = store.batches_per_epoch(batch_size, split, drop_last)
        if self.batches_per_epoch == 0:
            raise ValueError(f"Split {split!r} has {store.n_rows(split)} rows, fewer than one batch of {batch_size}.")
        row_bytes = store.d_in(hook) * store.dtype.itemsize
        self.buffer_rows = memory_budget_bytes // row_bytes
        # The buffer also holds the < batch_size rows carried from the previous one.
        self.capacity = self.buffer_rows - (batch_size - 1)
        largest = max(r.hi - r.lo for r in self.ranges)
        if largest > self.capacity:
            need = (largest + batch_size - 1) * row_bytes
            raise ValueError(
                f"memory_budget_bytes={memory_budget_bytes} holds {self.buffer_rows} rows of {hook}, but one shard "
                f"has {largest} rows (plus up to {batch_size - 1} carried rows). Give at least {need} bytes, a "
                "smaller batch_size, or build the store with a smaller shard_tokens."
            )
        self.position = start_batch
        self.peak_buffer_rows = 0  # most rows held at once (buffer + carried), to check the budget
        self._batches = self._generate()

    def __iter__(self) -> BatchIterator:
        return self

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the remaining batches (JSON-friendly): a checkpoint saves it
        and ``store.iter_batches(**state)`` continues exactly where this iterator is. The
        memory budget is included because it decides which shards share a buffer."""
        return {
            "hook": self.hook,
            "batch_size": self.batch_size,
            "split": self.split,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "memory_budget_bytes": self.memory_budget_bytes,
            "epochs": self.epochs,
            "start_batch": self.position,
            "drop_last": self.drop_last,
        }

    def __next__(self) -> Float[Tensor, "batch d_in"]:
        batch = next(self._batches)
        self.position += 1
        return batch

    def _generate(self) -> Iterator[Tensor]:
        epoch, first = divmod(self.position, self.batches_per_epoch)
        while self.epochs is None or epoch < self.epochs:
            yield from self._epoch(epoch, first)
            epoch, first = epoch + 1, 0

    def _groups(self, epoch: int) -> list[list[_Range]]:
        """This epoch's buffers: consecutive shards, in a seeded order, up to the capacity."""
        n = len(self.ranges)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else range(n)
        groups: list[list[_Range]] = [[]]
        rows = 0
        for i in order:
            rng = self.ranges[i]
            if groups[-1] and rows + rng.hi - rng.lo > self.capacity:
                groups.append([])
                rows = 0
            groups[-1].append(rng)
            rows += rng.hi - rng.lo
        return groups

    def _epoch(self, epoch: int, first_batch: int) -> Iterator[Tensor]:
        groups = self._groups(epoch)
        sizes = [sum(r.hi - r.lo for r in g) for g in groups]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        total = int(starts[-1])
        end = total - total % self.batch_size if self.drop_last else total
        cursor = first_batch * self.batch_size  # row offset in this epoch's stream
        carry: Tensor | None = None
        for g, group in enumerate(groups):
            if starts[g + 1] <= cursor or cursor >= end:
                continue
            buffer = torch.empty((sizes[g], self.store.d_in(self.hook)), dtype=self.store.dtype)
            self.store._fill(buffer, self.hook, group)
            perm = self._permutation(epoch, g, sizes[g])
            local = cursor - int(starts[g])
            while local < sizes[g] and cursor < end:
                self.peak_buffer_rows = max(self.peak_buffer_rows, sizes[g] + (0 if carry is None else len(carry)))
                have = 0 if carry is None else len(carry)
                take = min(self.batch_size - have, sizes[g] - local, end - cursor)
                rows = buffer[perm[local : local + take]]
                rows = rows if carry is None else torch.cat([carry, rows])
                local += take
                cursor += take
                if len(rows) == self.batch_size or cursor >= end:
                    carry = None
                    yield rows.to(self.device).float()
                else:
                    carry = rows.clone()
            del buffer

    def _permutation(self, epoch: int, group: int, n: int) -> Tensor:
        if not self.shuffle:
            return torch.arange(n)
        return torch.from_numpy(np.random.default_rng([self.seed, epoch, group]).permutation(n))
