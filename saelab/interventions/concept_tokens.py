"""Each category's characteristic tokens: the vocabulary that makes a text look like it.

The cheap screens of steering candidates read what a feature (or a steering vector) does to
the *next-token distribution*: how much probability it moves onto these tokens. A token is
characteristic of category ``c`` when it occurs in far more of ``c``'s texts than of the
others': the smoothed log-ratio of its document frequencies,
``log((df_c + a) / (n_c + 2a)) - log((df_rest + a) / (n_rest + 2a))`` with ``a = 0.5``.
Document frequency (texts containing the token, not occurrences) keeps one long text from
setting a category's vocabulary, and ``min_texts`` keeps a token seen in a single text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.tokens import token_strings, tokenize

SMOOTHING = 0.5


@dataclass(frozen=True)
class ConceptTokens:
    """Per category, its characteristic token ids (best first) with their log-ratios."""

    table: pd.DataFrame
    """One row per (category, token): ``category, token_id, token, texts, log_ratio, rank``."""

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(self.table["category"]))

    def ids(self, category: str) -> Int[Tensor, " n_tokens"]:
        """The token ids of ``category``, or a clear error for a category it does not have."""
        import torch

        if category not in self.categories:
            raise ValueError(f"no characteristic tokens for {category!r}; known categories: {self.categories}")
        rows = self.table.loc[self.table["category"] == category, "token_id"]
        return torch.tensor(rows.to_numpy(np.int64))


def concept_tokens(
    model: HookedTransformer,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    top: int = 40,
    min_texts: int = 3,
) -> ConceptTokens:
    """The ``top`` characteristic tokens of every category of ``labels`` (BOS left out)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    categories = list(dict.fromkeys(labels))
    if len(categories) < 2:
        raise ValueError(f"characteristic tokens need at least two categories, got {categories}")
    tokenized = tokenize(model, list(texts))
    label_arr = np.asarray(labels, dtype=object)
    rows = []
    for category in categories:
        members = label_arr == category
        df_in = _document_frequency([ids for ids, m in zip(tokenized.without_bos(), members, strict=True) if m])
        df_out = _document_frequency([ids for ids, m in zip(tokenized.without_bos(), members, strict=True) if not m])
        n_in, n_out = int(members.sum()), int((~members).sum())
        candidates = [t for t, n in df_in.items() if n >= min_texts]
        ratio = {t: _log_ratio(df_in[t], n_in, df_out.get(t, 0), n_out) for t in candidates}
        best = sorted(candidates, key=lambda t: (-ratio[t], t))[:top]
        strings = token_strings(model, best, contiguous=False)
        rows += [{"category": category, "token_id": t, "token": s, "texts": df_in[t], "log_ratio": ratio[t],
                  "rank": r} for r, (t, s) in enumerate(zip(best, strings, strict=True))]  # fmt: skip
    table = pd.DataFrame(rows, columns=["category", "token_id", "token", "texts", "log_ratio", "rank"])
    present = set(table["category"])
    empty = [c for c in categories if c not in present]
    if empty:
        raise ValueError(f"categories {empty} have no token in at least {min_texts} of their texts; lower min_texts")
    return ConceptTokens(table)


def _document_frequency(rows: list[list[int]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ids in rows:
        for token in set(ids):
            counts[token] = counts.get(token, 0) + 1
    return counts


def _log_ratio(df_in: int, n_in: int, df_out: int, n_out: int) -> float:
    a = SMOOTHING
    return float(np.log((df_in + a) / (n_in + 2 * a)) - np.log((df_out + a) / (n_out + 2 * a)))
