"""Masked SAE feature extraction: texts -> model activations at the SAE's hook -> SAE features.

Pooling only ever sees real tokens. The mask comes from how we built each row, never from
``tokens != pad_token_id``: SmolLM2's pad id equals its EOS id, and GPT-2 has no pad token.
The BOS position soaks up huge activations, so it is left out of pooling by default.

Texts are processed in length-sorted batches, bounded both by ``batch_size`` and by a
memory budget on the dense ``[batch, pos, d_sae]`` block, and a text's result does not
depend on what else shares its batch or on the padding side.
"""

from __future__ import annotations

import codecs
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.atomic import write_dir_atomically
from saelab.saes import check_compatible, stop_layer_for_hook

log = logging.getLogger(__name__)

Pooling = Literal["mean", "max", "sum", "last"]
POOLINGS: tuple[str, ...] = ("mean", "max", "sum", "last")

# Upper bound on the dense per-batch feature block [batch, pos, d_sae] (fp32 bytes). Keeps
# GPT-2's 24,576-feature SAEs within memory on long texts.
DEFAULT_MAX_BATCH_BYTES = 512 * 2**20


class TextTooLongWarning(UserWarning):
    """A text was longer than the model's context and was truncated."""


@dataclass(frozen=True)
class Tokenized:
    """Token ids per text, BOS included, already truncated to the context."""

    ids: list[list[int]]
    has_bos: bool
    """Whether position 0 of every text is a prepended BOS."""
    truncated: list[int]
    """Indices of texts that were cut to the context length."""


@dataclass(frozen=True)
class Batch:
    """One padded batch and which texts it holds."""

    index: Int[Tensor, " batch"]
    """Positions of these rows in the caller's text list."""
    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    pool_mask: Bool[Tensor, "batch pos"]
    """Real tokens that count for pooling (attention mask, minus BOS when excluded)."""


@dataclass
class PerTokenFeatures:
    """Per-token SAE features for a list of texts, stored sparsely (CSR over tokens).

    Row ``r`` of the flattened token axis belongs to text ``text_of_row[r]``; its non-zero
    features are ``feature_idx[row_ptr[r]:row_ptr[r+1]]`` with ``values`` alongside.
    Only tokens that count for pooling are kept (no pads; no BOS when excluded).
    """

    tokens: list[list[str]]
    """Token strings per text, aligned with the rows of that text."""
    token_ids: list[list[int]]
    d_sae: int
    row_ptr: Int[Tensor, " n_rows_plus_1"]
    feature_idx: Int[Tensor, " nnz"]
    values: Float[Tensor, " nnz"]
    text_row_start: Int[Tensor, " n_texts_plus_1"]
    """Rows of text ``i`` are ``text_row_start[i]:text_row_start[i+1]``."""

    @property
    def n_texts(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return self.n_texts

    def __getitem__(self, i: int) -> Float[Tensor, "pos d_sae"]:
        """``result[i]`` is text ``i``'s dense ``[pos, d_sae]`` activations."""
        if not -self.n_texts <= i < self.n_texts:
            raise IndexError(f"text index {i} out of range for {self.n_texts} texts")
        return self.dense(i % self.n_texts)

    def dense(self, i: int) -> Float[Tensor, "pos d_sae"]:
        """Dense activations of text ``i`` (one text at a time keeps memory bounded)."""
        start, end = int(self.text_row_start[i]), int(self.text_row_start[i + 1])
        out = torch.zeros(end - start, self.d_sae)
        lo, hi = int(self.row_ptr[start]), int(self.row_ptr[end])
        rows = torch.repeat_interleave(torch.arange(end - start), self.row_ptr[start + 1 : end + 1] - self.row_ptr[start:end])
        out[rows, self.feature_idx[lo:hi]] = self.values[lo:hi]
        return out

    def feature(self, feature: int) -> list[Float[Tensor, " pos"]]:
        """One feature's activation on every token of every text (for token highlighting),
        read from the sparse rows without building any dense ``[pos, d_sae]`` block."""
        self._check_feature(feature)
        hit = self.feature_idx == feature
        flat = torch.zeros(int(self.text_row_start[-1]))
        flat[self.row_of_nonzero()[hit]] = self.values[hit].float()
        bounds = self.text_row_start.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(self.n_texts)]

    def text_max(self, feature: int) -> Float[Tensor, " n_texts"]:
        """Each text's largest activation of ``feature`` over its tokens (0 where it never fires)."""
        self._check_feature(feature)
        hit = self.feature_idx == feature
        out = torch.zeros(self.n_texts)
        text = self.text_of_row()[self.row_of_nonzero()[hit]]
        return out.scatter_reduce_(0, text, self.values[hit].float(), reduce="amax")

    def row_of_nonzero(self) -> Int[Tensor, " nnz"]:
        """Token row (over all texts) of each stored non-zero."""
        return torch.repeat_interleave(torch.arange(self.row_ptr.numel() - 1), self.row_ptr[1:] - self.row_ptr[:-1])

    def _check_feature(self, feature: int) -> None:
        if not 0 <= int(feature) < self.d_sae:
            raise ValueError(f"feature {feature} is out of range for d_sae={self.d_sae}")

    def text_of_row(self) -> Int[Tensor, " n_rows"]:
        """Which text each flattened token row belongs to."""
        sizes = self.text_row_start[1:] - self.text_row_start[:-1]
        return torch.repeat_interleave(torch.arange(self.n_texts), sizes)

    def pool(self, pooling: Pooling = "mean") -> Float[Tensor, "n_texts d_sae"]:
        """Pooled features per text, computed from the stored tokens only (the same numbers
        :func:`extract_features` gives with that pooling, up to float summation order)."""
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; valid: {list(POOLINGS)}")
        rows_per_text = (self.text_row_start[1:] - self.text_row_start[:-1]).to(torch.float32)
        if (rows_per_text == 0).any():
            raise ValueError("A text has no tokens to pool (it was empty after excluding BOS).")
        row_of_nz = self.row_of_nonzero()
        if pooling == "last":
            last_rows = self.text_row_start[1:] - 1
            out = torch.zeros(self.n_texts, self.d_sae)
            take = torch.isin(row_of_nz, last_rows)
            text = self.text_of_row()[row_of_nz[take]]
            out[text, self.feature_idx[take]] = self.values[take]
            return out
        text_of_nz = self.text_of_row()[row_of_nz]
        flat = text_of_nz * self.d_sae + self.feature_idx
        if pooling in ("sum", "mean"):
            out = torch.zeros(self.n_texts * self.d_sae).index_add_(0, flat, self.values.float())
            out = out.view(self.n_texts, self.d_sae)
            return out / rows_per_text[:, None] if pooling == "mean" else out
        # max: a (text, feature) pair that is zero on some token has 0 as a candidate too.
        out = torch.full((self.n_texts * self.d_sae,), -torch.inf).scatter_reduce_(
            0, flat, self.values.float(), reduce="amax"
        )
        nnz = torch.zeros(self.n_texts * self.d_sae).index_add_(0, flat, torch.ones_like(self.values, dtype=torch.float32))
        has_zero = nnz < rows_per_text.repeat_interleave(self.d_sae)
        out = torch.where(has_zero, out.clamp(min=0.0), out)
        return out.view(self.n_texts, self.d_sae)

    def save(self, path: str | Path) -> Path:
        """Write to a folder (tensors as safetensors, token strings as JSON), atomically."""
        from safetensors.torch import save_file

        def write(tmp: Path) -> None:
            tensors = {
                "row_ptr": self.row_ptr, "feature_idx": self.feature_idx,
                "values": self.values, "text_row_start": self.text_row_start,
            }
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "features.safetensors"))
            meta = {"d_sae": self.d_sae, "tokens": self.tokens, "token_ids": self.token_ids}
            (tmp / "tokens.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

        return write_dir_atomically(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> PerTokenFeatures:
        """Read what :meth:`save` wrote."""
        from safetensors.torch import load_file

        path = Path(path)
        tensors = load_file(str(path / "features.safetensors"))
        meta = json.loads((path / "tokens.json").read_text(encoding="utf-8"))
        return cls(tokens=meta["tokens"], token_ids=meta["token_ids"], d_sae=int(meta["d_sae"]), **tensors)

    def to_frame(self):
        """Long format: one row per (text, position, feature) with a non-zero value."""
        import pandas as pd

        counts = self.row_ptr[1:] - self.row_ptr[:-1]
        row_of_nz = torch.repeat_interleave(torch.arange(len(counts)), counts)
        text_of_row = torch.repeat_interleave(
            torch.arange(self.n_texts), self.text_row_start[1:] - self.text_row_start[:-1]
        )
        text = text_of_row[row_of_nz]
        pos = row_of_nz - self.text_row_start[text]
        flat_tokens = [tok for toks in self.tokens for tok in toks]
        return pd.DataFrame(
            {
                "text": text.numpy(),
                "pos": pos.numpy(),
                "token": [flat_tokens[r] for r in row_of_nz.tolist()],
                "feature": self.feature_idx.numpy(),
                "value": self.values.numpy(),
            }
        )


# ---------------------------------------------------------------------------------------
# Public entry points.


def extract_features(
    model: HookedTransformer,
    sae: SAE,
    texts: Sequence[str],
    *,
    pooling: Pooling | None = "mean",
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: Literal["left", "right"] = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> Float[Tensor, "n_texts d_sae"] | PerTokenFeatures:
    """SAE features of ``texts`` at the SAE's hook, pooled over real tokens.

    Returns ``[n_texts, d_sae]`` (CPU, float32) for ``pooling`` in mean/max/sum/last, or a
    :class:`PerTokenFeatures` for ``pooling=None``. Texts longer than the model's context
    are truncated with a :class:`TextTooLongWarning`.
    """
    return extract_features_multi(
        model,
        {"sae": sae},
        texts,
        pooling=pooling,
        exclude_bos=exclude_bos,
        batch_size=batch_size,
        padding_side=padding_side,
        max_batch_bytes=max_batch_bytes,
        progress=progress,
    )["sae"]


def extract_features_multi(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    texts: Sequence[str],
    *,
    pooling: Pooling | None = "mean",
    exclude_bos: bool = True,
    batch_size: int = 16,
    padding_side: Literal["left", "right"] = "right",
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> dict[str, Float[Tensor, "n_texts d_sae"] | PerTokenFeatures]:
    """:func:`extract_features` for several SAEs (say, one per layer) from one model pass.

    Each batch runs the model once, as deep as the deepest SAE's hook needs, and every SAE
    encodes its own hook's activations from that pass; the result for each SAE equals what
    :func:`extract_features` gives for it alone. Returns ``{name: result}`` in ``saes``' order.
    """
    _validate_options(pooling, batch_size, padding_side)
    if not saes:
        raise ValueError("saes is empty; pass at least one SAE, e.g. {'layer 20': sae}.")
    hooks = {name: check_compatible(model, sae) for name, sae in saes.items()}
    tokenized = tokenize(model, texts)
    if exclude_bos and not tokenized.has_bos:
        log.debug("exclude_bos=True but this model prepends no BOS; nothing to exclude")
    widest = max(sae.cfg.d_sae for sae in saes.values())
    batches = list(iter_batches(tokenized, batch_size, padding_side, exclude_bos, widest, max_batch_bytes))
    pooled: dict[str, Tensor] = {name: torch.zeros(len(texts), sae.cfg.d_sae) for name, sae in saes.items()}
    per_token: dict[str, list[tuple[int, _SparseRows]]] = {name: [] for name in saes}
    show = progress if progress is not None else len(batches) > 4
    desc = f"features @ {', '.join(dict.fromkeys(hooks.values()))}"
    for batch in tqdm(batches, desc=desc, disable=not show, leave=False):
        acts = run_hooks(model, sorted(set(hooks.values())), batch.tokens, batch.attention_mask)
        for name, sae in saes.items():
            feats = _encode(sae, acts[hooks[name]], batch)
            if pooling is None:
                per_token[name].extend(_split_rows(feats, batch))
            else:
                pooled[name][batch.index] = pool(feats, batch.pool_mask, pooling).float().cpu()
    if pooling is not None:
        return {name: _check_finite(pooled[name], f"pooled features of {name!r}") for name in saes}
    return {
        name: _assemble_per_token(model, tokenized, per_token[name], exclude_bos, sae.cfg.d_sae)
        for name, sae in saes.items()
    }


def pool(
    feats: Float[Tensor, "batch pos d"], mask: Bool[Tensor, "batch pos"], pooling: Pooling
) -> Float[Tensor, "batch d"]:
    """Pool over positions where ``mask`` is True. Pads may hold anything, even NaN."""
    keep = mask.unsqueeze(-1)
    count = mask.sum(dim=1, keepdim=True)
    if (count == 0).any():
        raise ValueError("A text has no tokens left to pool (it was empty after excluding BOS).")
    if pooling == "sum":
        return torch.where(keep, feats, 0).sum(dim=1)
    if pooling == "mean":
        return torch.where(keep, feats, 0).sum(dim=1) / count.to(feats.dtype)
    if pooling == "max":
        return torch.where(keep, feats, -torch.inf).amax(dim=1)
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask, positions, -1).amax(dim=1)
        return feats[torch.arange(feats.shape[0], device=feats.device), last]
    raise ValueError(f"Unknown pooling {pooling!r}; valid: {POOLINGS} or None")


# ---------------------------------------------------------------------------------------
# Tokenization and batching.


def tokenize(model: HookedTransformer, texts: Sequence[str], *, max_length: int | None = None) -> Tokenized:
    """Token ids per text with the model's BOS convention, truncated to the context."""
    _validate_texts(texts)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError("The model has no tokenizer attached.")
    bos = tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    has_bos = bos is not None
    max_length = max_length or model.cfg.n_ctx
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    ids, truncated = [], []
    for i, row in enumerate(encoded):
        row = ([bos] if has_bos else []) + list(row)
        if len(row) > max_length:
            truncated.append(i)
            row = row[:max_length]
        ids.append(row)
    if truncated:
        warnings.warn(
            f"{len(truncated)} text(s) exceed the model's context of {max_length} tokens and were "
            f"truncated (indices {truncated[:10]}{'...' if len(truncated) > 10 else ''}).",
            TextTooLongWarning,
            stacklevel=3,
        )
    return Tokenized(ids=ids, has_bos=has_bos, truncated=truncated)


def iter_batches(
    tokenized: Tokenized,
    batch_size: int,
    padding_side: Literal["left", "right"],
    exclude_bos: bool,
    d_sae: int,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    pad_id: int = 0,
) -> Iterator[Batch]:
    """Length-sorted batches: similar lengths share a batch, so little compute goes to pads.

    The pad id is irrelevant to the result (pads are masked in attention and pooling).
    """
    lengths = torch.tensor([len(r) for r in tokenized.ids])
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        # Bound the dense [batch, pos, d_sae] fp32 block, but always make progress.
        by_memory = max(1, max_batch_bytes // max(1, longest * d_sae * 4))
        take = order[start : start + min(batch_size, by_memory)]
        start += len(take)
        yield _pad(tokenized, take, longest, padding_side, exclude_bos, pad_id)


def _pad(
    tokenized: Tokenized, take: list[int], width: int, side: str, exclude_bos: bool, pad_id: int
) -> Batch:
    tokens = torch.full((len(take), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(take), width), dtype=torch.long)
    pool_mask = torch.zeros((len(take), width), dtype=torch.bool)
    for row, i in enumerate(take):
        ids = tokenized.ids[i]
        offset = width - len(ids) if side == "left" else 0
        tokens[row, offset : offset + len(ids)] = torch.tensor(ids)
        attn[row, offset : offset + len(ids)] = 1
        first = offset + (1 if exclude_bos and tokenized.has_bos else 0)
        pool_mask[row, first : offset + len(ids)] = True
    return Batch(index=torch.tensor(take), tokens=tokens, attention_mask=attn, pool_mask=pool_mask)


# ---------------------------------------------------------------------------------------
# Model + SAE.


def hook_activations(
    model: HookedTransformer, hook: str, tokens: Tensor, attention_mask: Tensor
) -> Float[Tensor, "batch pos d_in"]:
    """Activations at ``hook``, running the model only as deep as that hook needs."""
    return run_hooks(model, [hook], tokens, attention_mask)[hook]


def run_hooks(
    model: HookedTransformer,
    hooks: Sequence[str],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> dict[str, Float[Tensor, "batch pos d"]]:
    """Activations at every hook from one forward pass that stops as early as the hooks allow.

    ``attention_mask`` (1 = real token) is needed when rows are padded; None means every
    position is real.
    """
    stops = [stop_layer_for_hook(h) for h in hooks]
    stop = None if any(s is None for s in stops) else max(stops)
    # With stop_at_layer=L the forward returns the residual entering block L, which is
    # blocks.L.hook_resid_pre itself; that hook would never fire, so read the return value.
    from_output = [h for h, s in zip(hooks, stops) if stop is not None and s == stop and h.endswith("hook_resid_pre")]
    cached = [h for h in hooks if h not in from_output]
    device = model.cfg.device
    kwargs: dict[str, Any] = {"stop_at_layer": stop} if stop is not None else {"return_type": None}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(device)
    with torch.inference_mode():
        if cached:
            out, cache = model.run_with_cache(tokens.to(device), names_filter=cached, **kwargs)
            acts = {h: cache[h] for h in cached}
        else:  # no cache needed: skip run_with_cache's bookkeeping
            out, acts = model(tokens.to(device), **kwargs), {}
    acts.update({h: out for h in from_output})
    return acts


def encode_activations(sae: SAE, acts: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
    """SAE features of model activations, moved to the SAE's device and dtype first (an fp16
    SAE may read fp32 activations, or sit on another device than the model)."""
    param = next(sae.parameters())
    return sae.encode(acts.to(device=param.device, dtype=param.dtype))


def token_strings(model: HookedTransformer, ids: Sequence[int], *, contiguous: bool = True) -> list[str]:
    """One display string per token id.

    Byte-level BPE (GPT-2, SmolLM2) splits some characters (emoji, CJK, some accented and
    Cyrillic letters) across tokens, and decoding such a token on its own gives "�". For a
    ``contiguous`` run of tokens (a text) the bytes are decoded incrementally instead: each
    token shows the characters its bytes complete, so "😂" lands on the token that finishes
    it and a token holding only the start of a character shows "". For unrelated tokens
    (``contiguous=False``, e.g. a logit-lens list) the bytes of a partial character are shown
    escaped, e.g. ``" \\xf0\\x9f\\x98"``. Special tokens and non-byte-level tokenizers decode token by token.
    """
    tokenizer = model.tokenizer
    byte_of = _byte_decoder(tokenizer)
    if byte_of is None:
        return [tokenizer.decode([t]) for t in ids]
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for token_id, piece in zip(ids, pieces):
        if token_id in special or piece is None or any(ch not in byte_of for ch in piece):
            decoder.reset()
            out.append(tokenizer.decode([token_id]))
            continue
        raw = bytes(byte_of[ch] for ch in piece)
        if contiguous:
            out.append(decoder.decode(raw))
        else:
            out.append(raw.decode("utf-8", errors="backslashreplace"))
    return out


def _byte_decoder(tokenizer: Any) -> dict[str, int] | None:
    """Map from the byte-level alphabet (e.g. "Ġ" for a space) to byte values, or None when
    the tokenizer is not byte-level BPE."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.decoder).__name__ != "ByteLevel":
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}


def _encode(sae: SAE, acts: Float[Tensor, "batch pos d_in"], batch: Batch) -> Float[Tensor, "batch pos d_sae"]:
    with torch.inference_mode():
        feats = encode_activations(sae, acts)
    return feats.to(batch.pool_mask.device) if feats.device != batch.pool_mask.device else feats


@dataclass(frozen=True)
class _SparseRows:
    """One text's kept tokens in CSR form (row = token)."""

    n_rows: int
    row_counts: Tensor
    cols: Tensor
    vals: Tensor


def _split_rows(feats: Tensor, batch: Batch) -> list[tuple[int, _SparseRows]]:
    out = []
    for row, i in enumerate(batch.index.tolist()):
        kept = feats[row][batch.pool_mask[row].to(feats.device)].float().cpu()
        rows, cols = kept.nonzero(as_tuple=True)  # row-major order, as CSR needs
        counts = torch.bincount(rows, minlength=kept.shape[0])
        out.append((i, _SparseRows(kept.shape[0], counts, cols, kept[rows, cols])))
    return out


def _assemble_per_token(
    model: HookedTransformer,
    tokenized: Tokenized,
    rows: list[tuple[int, _SparseRows]],
    exclude_bos: bool,
    d_sae: int,
) -> PerTokenFeatures:
    by_text = dict(rows)
    skip = 1 if exclude_bos and tokenized.has_bos else 0
    token_ids = [ids[skip:] for ids in tokenized.ids]
    tokens = [token_strings(model, ids) for ids in token_ids]
    row_ptrs, cols, vals, text_start = [torch.zeros(1, dtype=torch.long)], [], [], [0]
    total_rows, total_nnz = 0, 0
    for i in range(len(token_ids)):
        part = by_text[i]
        row_ptrs.append(torch.cumsum(part.row_counts, 0) + total_nnz)
        cols.append(part.cols)
        vals.append(part.vals)
        total_nnz += int(part.vals.numel())
        total_rows += part.n_rows
        text_start.append(total_rows)
    result = PerTokenFeatures(
        tokens=tokens,
        token_ids=token_ids,
        d_sae=d_sae,
        row_ptr=torch.cat(row_ptrs),
        feature_idx=torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long),
        values=torch.cat(vals) if vals else torch.zeros(0),
        text_row_start=torch.tensor(text_start),
    )
    _check_finite(result.values, "per-token features")
    return result


# ---------------------------------------------------------------------------------------
# Validation.


def _validate_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string; wrap it: [text]")
    if texts is None or len(texts) == 0:
        raise ValueError("texts is empty; pass at least one non-empty string.")
    bad_type = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad_type:
        raise TypeError(f"texts must all be strings; items {bad_type[:10]} are not.")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise ValueError(f"texts {empty[:10]} are empty or whitespace only; they have no tokens to analyse.")


def _validate_options(pooling: str | None, batch_size: int, padding_side: str) -> None:
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; valid: {list(POOLINGS)} or None (per-token)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")


def _check_finite(x: Tensor, what: str) -> Tensor:
    if not torch.isfinite(x).all():
        raise FloatingPointError(
            f"Non-finite values in {what}: the model or SAE produced NaN/inf "
            "(check the SAE's dtype and that it matches the model)."
        )
    return x



# ---------------------------------------------------------------------------------------
# Phase 1: dense residual vs sparse features for one text.


@dataclass(frozen=True)
class DenseVsSparse:
    """How dense the residual stream is next to how sparse the SAE's features are, for one text."""

    tokens: list[str]
    resid: Float[Tensor, "pos d_model"]
    """Residual activations at the SAE's hook (pooled positions only)."""
    features: Float[Tensor, "pos d_sae"]
    resid_nonzero_frac: float
    """Share of (token, dim) residual entries that are non-zero (typically ~1.0)."""
    feature_active_frac: float
    """Share of (token, feature) entries that are active (> 0)."""
    l0_per_token: Int[Tensor, " pos"]
    """Number of active features at each token."""
    n_features_active_anywhere: int
    """Features active on at least one token of the text."""


def dense_vs_sparse(model: HookedTransformer, sae: SAE, text: str, *, exclude_bos: bool = True) -> DenseVsSparse:
    """The phase-1 comparison: fraction non-zero in the residual vs active SAE features, L0 per token."""
    hook = check_compatible(model, sae)
    tokenized = tokenize(model, [text])
    batch = next(iter_batches(tokenized, 1, "right", exclude_bos, sae.cfg.d_sae))
    acts = hook_activations(model, hook, batch.tokens, batch.attention_mask)
    with torch.inference_mode():
        feats = encode_activations(sae, acts)
    keep = batch.pool_mask[0]
    resid = acts[0][keep.to(acts.device)].float().cpu()
    features = feats[0][keep.to(feats.device)].float().cpu()
    active = features > 0
    skip = 1 if exclude_bos and tokenized.has_bos else 0
    return DenseVsSparse(
        tokens=token_strings(model, tokenized.ids[0][skip:]),
        resid=resid,
        features=features,
        resid_nonzero_frac=float((resid != 0).float().mean()),
        feature_active_frac=float(active.float().mean()),
        l0_per_token=active.sum(dim=1),
        n_features_active_anywhere=int(active.any(dim=0).sum()),
    )


# ---------------------------------------------------------------------------------------
# The padding lesson: what seed 004 computed before it masked pads.


def naive_mean_features(
    model: HookedTransformer, sae: SAE, texts: Sequence[str], *, batch_size: int = 16
) -> Float[Tensor, "n_texts d_sae"]:
    """Mean features the way seed 004 first computed them: **wrong on purpose**, kept only
    to measure how much masking matters, side by side with :func:`extract_features`.

    Texts are batched in the given order and right-padded to the longest in the batch; the
    model itself sees the attention mask (so this isolates the pooling mistake), but the mean
    runs over every position of the padded row: pads and BOS included. A text's result
    therefore depends on what else is in its batch.
    """
    _validate_options("mean", batch_size, "right")
    hook = check_compatible(model, sae)
    tokenized = tokenize(model, texts)
    out = torch.zeros(len(texts), sae.cfg.d_sae)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(texts), batch_size):
        take = list(range(start, min(start + batch_size, len(texts))))
        width = max(len(tokenized.ids[i]) for i in take)
        batch = _pad(tokenized, take, width, "right", False, pad_id)
        feats = _encode(sae, hook_activations(model, hook, batch.tokens, batch.attention_mask), batch)
        out[batch.index] = feats.float().mean(dim=1).cpu()
    return _check_finite(out, "naively pooled features")
