"""From a finished pass's selections to each feature's :class:`FeatureExamples`: the
explain split (top windows) and the disjoint scoring split (positives spread over the
activation quantiles, random negatives, hard negatives), as token strings with activations."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.decompositions import Decomposition
from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.autointerp.sources import ActivationSource
from saelab.extract.tokens import token_strings

if TYPE_CHECKING:
    from saelab.autointerp.pass_state import PassState


class Entry(NamedTuple):
    score: float
    value: float
    window: int
    acts: Tensor


def assemble(state: PassState, source: ActivationSource, model: HookedTransformer, dec: Decomposition,
             selected: list[int], cfg: ExamplesConfig) -> dict[int, FeatureExamples]:  # fmt: skip
    maker = ContextMaker(state, source, model)
    threshold = state.calibration.threshold_F.cpu()
    fired = state.fired_S.cpu()
    out = {}
    every = {name: sel.all_entries() for name, sel in state.selections.items()}
    for j, feature in enumerate(selected):
        entries = {name: [Entry(*e) for e in rows[j]] for name, rows in every.items()}
        splits = _split(entries, cfg, random.Random(cfg.seed * 7919 + feature))
        out[feature] = FeatureExamples(
            feature=feature,
            decomposition=dec.name,
            threshold=float(threshold[feature]),
            frequency=float(fired[j]) / max(1, state.n_tokens),
            max_activation=max((e.value for e in entries["top"]), default=0.0),
            explain=maker.contexts(splits["explain"]),
            positives=maker.contexts(splits["positives"]),
            negatives=maker.contexts(splits["negatives"]),
            hard_negatives=maker.contexts(splits["hard_negatives"]),
        )
    return out


def _split(entries: dict[str, list[Entry]], cfg: ExamplesConfig, rng: random.Random) -> dict[str, list[Entry]]:
    """Disjoint explain and scoring windows. A rare feature gives at most half of the
    activating windows it was seen in to the explainer, so something is left to score."""
    top = entries["top"]
    seen = {e.window for e in top} | {e.window for e in entries["activating"]}
    n_explain = min(cfg.n_explain, max(1, len(seen) // 2)) if len(seen) > 1 else len(seen)
    explain = top[:n_explain]
    held_in = {e.window for e in explain}
    pool = [e for e in entries["activating"] if e.window not in held_in]
    pool += [e for e in top[n_explain:] if e.window not in {p.window for p in pool}]
    negatives = entries["non_activating"][: cfg.n_negatives]
    taken = {e.window for e in negatives}
    hard = [e for e in entries["hard"] if e.window not in taken][: cfg.n_hard_negatives]
    return {"explain": explain, "positives": _spread(pool, cfg.n_positives, cfg.n_quantiles, rng),
            "negatives": negatives, "hard_negatives": hard}  # fmt: skip


def _spread(pool: list[Entry], n: int, n_quantiles: int, rng: random.Random) -> list[Entry]:
    """Up to ``n`` windows drawn round-robin from ``n_quantiles`` equal-count activation bins,
    strongest bin first, so weak activations are scored as well as strong ones."""
    ordered = sorted(pool, key=lambda e: e.value)
    bins = [list(b) for b in np.array_split(np.arange(len(ordered)), min(n_quantiles, max(1, len(ordered))))]
    for b in bins:
        rng.shuffle(b)
    chosen: list[Entry] = []
    while len(chosen) < n and any(bins):
        for b in reversed(bins):
            if b and len(chosen) < n:
                chosen.append(ordered[b.pop()])
    return sorted(chosen, key=lambda e: -e.value)


class ContextMaker:
    """Token strings per window, decoded once however many features share the window."""

    def __init__(self, state: PassState, source: ActivationSource, model: HookedTransformer) -> None:
        import torch

        self.table = torch.cat(state.windows).tolist() if state.windows else []
        self.source, self.model = source, model
        self._strings: dict[int, tuple[tuple[str, ...], tuple[int, ...]]] = {}

    def contexts(self, entries: list[Entry]) -> tuple[Context, ...]:
        return tuple(self.context(e) for e in entries)

    def context(self, entry: Entry) -> Context:
        seq, start, first, end = self.table[entry.window]
        if entry.window not in self._strings:
            ids = self.source.token_ids(seq)[start + first : start + end]
            self._strings[entry.window] = (tuple(token_strings(self.model, ids)), tuple(ids))
        tokens, ids = self._strings[entry.window]
        acts = tuple(float(a) for a in entry.acts[first:end].tolist())
        return Context(tokens, ids, acts, (int(seq), int(start + first)))
