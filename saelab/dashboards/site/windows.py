"""Every window the site shows, stored once per model: a vocabulary and shards of token entries.

Windows are consecutive, aligned cuts of the corpus (``DashboardConfig.window``), so the same
window turns up among many features' top and quantile windows, and among the features of every
SAE built on the same text. Storing its tokens once, and each feature's activations on it as
sparse (position, value) pairs, is what brings a feature under the site's size goal. A window is
the same window when its (sequence, start) and its tokens are: the dashboards' ``source`` names
the hook too, so it cannot tell that two SAEs read the same text.

A vocabulary entry is a token id with its string; a token whose string differs from the one
first seen for its id (hand-made data) gets an entry of its own (listed in ``variants``), so
every window is shown as it was given. The logit tables name their tokens by id too (a tenth of
a feature's bytes as strings), with the string only where it differs from the vocabulary's.
Entries are ranked by how often they occur in windows, so the frequent ones are one-byte
varints. Shards hold windows in the order they were first seen, which keeps a rare feature's
windows (seen nowhere else) in one or two shards; a page loads only the shards it shows.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saelab.autointerp.feature_examples import Context
from saelab.dashboards.site.encode import json_bytes, varints, write_pack

SHARD_WINDOWS = 256
"""Windows per shard file: 256 windows of 32 tokens gzip to ~11 KB (10.6 bits a token), against
10.2 bits at 1,024 windows; a feature page reads at most one shard per window it shows."""

WindowKey = tuple[tuple[int, int], tuple[int, ...], tuple[str, ...]]


@dataclass
class WindowStore:
    """The windows of one model's SAEs; :meth:`add` returns a window's index in the site."""

    model_key: str
    """Folder of this model's files under ``data/``."""
    _index: dict[WindowKey, int] = field(default_factory=dict)
    _strings: dict[int, str] = field(default_factory=dict)
    """Token id -> the string first seen for it."""
    _variants: dict[tuple[int, str], int] = field(default_factory=dict)
    """(token id, another string) -> its code, -1 - k."""
    _codes: array = field(default_factory=lambda: array("i"))
    """Every window's tokens one after the other: token ids, or a variant's negative code."""
    _starts: array = field(default_factory=lambda: array("q", [0]))
    _sources: array = field(default_factory=lambda: array("q"))
    """(sequence, start) of each window, flattened."""
    _alone: set[int] = field(default_factory=set)
    """Ids of tokens shown on their own (logit tables), which the vocabulary must hold too."""

    def __len__(self) -> int:
        return len(self._starts) - 1

    def add(self, ctx: Context) -> int:
        """The index of the window ``ctx`` in this store (added if it is new)."""
        key = (ctx.source, ctx.token_ids, ctx.tokens)
        found = self._index.get(key)
        if found is not None:
            return found
        codes = list(ctx.token_ids)
        # One C-level pass records the first string of each new id and returns each id's string.
        shown = tuple(map(self._strings.setdefault, ctx.token_ids, ctx.tokens))
        if shown != ctx.tokens:
            for i, (token_id, token) in enumerate(zip(ctx.token_ids, ctx.tokens, strict=True)):
                if shown[i] != token:
                    codes[i] = self._variants.setdefault((token_id, token), -1 - len(self._variants))
        self._codes.extend(codes)
        self._starts.append(len(self._codes))
        self._sources.extend(ctx.source)
        self._index[key] = len(self) - 1
        return len(self) - 1

    def token(self, token_id: int, token: str) -> str | None:
        """Note a token shown on its own (a logit table's) so the vocabulary holds it; returns its
        string when that differs from the vocabulary's (the page then shows the string given)."""
        self._alone.add(token_id)
        return None if self._strings.setdefault(token_id, token) == token else token

    def write(self, root: Path) -> int:
        """Write the vocabulary and the shards under ``root/data/<model_key>/``; returns bytes written."""
        codes = np.frombuffer(self._codes, dtype=np.int32).astype(np.int64) if len(self._codes) else np.zeros(0, int)
        alone = np.fromiter(self._alone, dtype=np.int64, count=len(self._alone))
        # Codes are token ids (or a few negative variants): counting them is linear, where
        # np.unique sorted millions of them. Tokens shown only in logit tables rank last.
        low = int(min(codes.min(initial=0), alone.min(initial=0)))
        size = int(max(codes.max(initial=0), alone.max(initial=0))) - low + 1
        counts = np.bincount(codes - low, minlength=size)
        used = counts > 0
        used[alone - low] = True
        entries = np.flatnonzero(used)
        order = entries[np.argsort(-counts[entries], kind="stable")]
        rank = np.zeros(size, dtype=np.int64)
        rank[order] = np.arange(len(order))
        ranked = rank[codes - low]
        by_rank = (order + low).tolist()
        variants = {code: pair for pair, code in self._variants.items()}
        vocab = {"ids": [c if c >= 0 else variants[c][0] for c in by_rank],
                 "tokens": [self._strings[c] if c >= 0 else variants[c][1] for c in by_rank],
                 "variants": [r for r, c in enumerate(by_rank) if c < 0]}  # fmt: skip
        written = write_pack(root, f"{self.model_key}/vocab", json_bytes(vocab))
        starts = np.frombuffer(self._starts, dtype=np.int64)
        sources = np.frombuffer(self._sources, dtype=np.int64).reshape(-1, 2) if len(self) else np.zeros((0, 2))
        for shard, first in enumerate(range(0, len(self), SHARD_WINDOWS)):
            last = min(first + SHARD_WINDOWS, len(self))
            head = np.column_stack([sources[first:last], np.diff(starts[first : last + 1])])
            tokens = ranked[starts[first] : starts[last]]
            payload = varints(np.array([last - first])) + varints(head.T) + varints(tokens)
            written += write_pack(root, shard_key(self.model_key, shard), payload)
        return written


def shard_key(model_key: str, shard: int) -> str:
    return f"{model_key}/w{shard}"
