"""Token counts of documents: exact with the model's tokenizer, else estimated from characters."""

from __future__ import annotations

from typing import Any

from saelab.extract.tokens import encode_texts


class TokenCounter:
    """Counts tokens of a batch of texts: exactly with a tokenizer, else estimated."""

    def __init__(self, tokenizer: Any | None) -> None:
        self.tokenizer = tokenizer
        self.exact = tokenizer is not None

    def __call__(self, texts: list[str]) -> list[int]:
        if self.tokenizer is None:
            return [estimate_tokens(t) for t in texts]
        ids = encode_texts(self.tokenizer, texts)
        return [len(x) for x in ids]


def estimate_tokens(text: str) -> int:
    # Measured on SmolLM2's tokenizer: ~3.5 characters per token for ASCII code and prose,
    # ~1.4 for CJK and other non-ASCII text.
    n_ascii = sum(map(str.isascii, text))
    return max(1, round(n_ascii / 3.5 + (len(text) - n_ascii) / 1.4))
