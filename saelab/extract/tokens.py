"""The one tokenization policy, and token ids shown as readable strings.

Every path that turns text into token ids goes through :func:`encode_texts`: feature
extraction, the corpus and the activation store. No special tokens are added (BOS is
prepended explicitly where the model expects it), and special-token strings *inside* a text
(``<|endoftext|>`` in a docstring, ``<|im_end|>`` in a pasted chat log) are tokenized as
plain text: as real special tokens they become attention sinks with activations many times
the norm of their neighbours, and a text would be tokenized one way for training and
another for analysis.
"""

from __future__ import annotations

import codecs
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer
    from transformers import PreTrainedTokenizerBase


class TextTooLongWarning(UserWarning):
    """A text was longer than a limit (the model's context, a caller's ``max_length``) and was
    truncated; the message counts the texts cut and the tokens dropped."""


def warn_truncated(cut: Sequence[int], n_texts: int, dropped: int, limit: str, *, stacklevel: int = 2) -> None:
    """Say that texts ``cut`` (indices, of ``n_texts``) lost ``dropped`` tokens to ``limit``
    (e.g. "the model's context of 2048 tokens"); nothing when none was cut."""
    if not cut:
        return
    shown = f"{list(cut[:10])}{'...' if len(cut) > 10 else ''}"
    warnings.warn(
        f"{len(cut)} of {n_texts} text(s) exceed {limit} and were truncated, dropping {dropped} token(s) "
        f"(indices {shown}).",
        TextTooLongWarning,
        stacklevel=stacklevel + 1,
    )


@dataclass(frozen=True)
class Tokenized:
    """Token ids per text, BOS included, already truncated to the context."""

    ids: list[list[int]]
    has_bos: bool
    """Whether position 0 of every text is a prepended BOS."""
    truncated: list[int]
    """Indices of texts that were cut to the context length."""

    def without_bos(self) -> list[list[int]]:
        """The ids with the prepended BOS (if any) left out."""
        return [row[1:] for row in self.ids] if self.has_bos else [list(row) for row in self.ids]


_ENCODING = dict(add_special_tokens=False, split_special_tokens=True)
"""The one encoding policy: no special tokens added, special-token strings kept as text."""


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of ``texts``: no special tokens added, special-token strings kept as text."""
    return tokenizer(list(texts), **_ENCODING)["input_ids"]


def encode_with_offsets(tokenizer: Any, texts: Sequence[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """:func:`encode_texts`'s ids and each token's character ``(start, end)`` (a fast tokenizer's)."""
    encoded = tokenizer(list(texts), return_offsets_mapping=True, **_ENCODING)
    return encoded["input_ids"], encoded["offset_mapping"]


def tokenizer_of(model: HookedTransformer) -> PreTrainedTokenizerBase:
    """The model's tokenizer, or a clear error when it has none attached."""
    if model.tokenizer is None:
        raise ValueError(
            f"The model {model.cfg.model_name!r} has no tokenizer attached; saelab reads texts through it. "
            "Load models with saelab.load_model, which attaches one."
        )
    return model.tokenizer


def bos_token_id(model: HookedTransformer) -> int | None:
    """The BOS id the model expects at position 0, or None when it prepends none."""
    if not model.cfg.default_prepend_bos:
        return None
    bos = tokenizer_of(model).bos_token_id
    return bos if isinstance(bos, int) else None


def tokenize(model: HookedTransformer, texts: Sequence[str], *, max_length: int | None = None) -> Tokenized:
    """Token ids per text with the model's BOS convention (BOS counts toward the length),
    cut to ``max_length`` (None: the model's context) with a :class:`TextTooLongWarning`."""
    validate_texts(texts)
    tokenizer = tokenizer_of(model)
    bos = bos_token_id(model)
    limit = max_length or model.cfg.n_ctx
    ids, truncated, dropped = [], [], 0
    for i, row in enumerate(encode_texts(tokenizer, texts)):
        row = ([bos] if bos is not None else []) + list(row)
        if len(row) > limit:
            truncated.append(i)
            dropped += len(row) - limit
            row = row[:limit]
        ids.append(row)
    why = f"the model's context of {limit} tokens" if max_length is None else f"max_length={limit} tokens"
    warn_truncated(truncated, len(texts), dropped, why, stacklevel=3)
    return Tokenized(ids=ids, has_bos=bos is not None, truncated=truncated)


def validate_texts(texts: Sequence[str]) -> None:
    """Clear errors for what cannot be tokenized: a bare string, non-strings, empty texts."""
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
    tokenizer = tokenizer_of(model)
    byte_of = _byte_decoder(tokenizer)
    if byte_of is None:
        return [str(tokenizer.decode([t])) for t in ids]
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for token_id, piece in zip(ids, pieces, strict=True):
        if token_id in special or piece is None or any(ch not in byte_of for ch in piece):
            decoder.reset()
            out.append(str(tokenizer.decode([token_id])))
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
