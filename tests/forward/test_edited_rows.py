"""saelab.forward.edited_rows: the one ablation engine. A zero delta gives back the clean rows'
reduction exactly, edited rows equal their own resumed runs whatever the chunking, chunks start
their logits at their rows' first edited position, and each chunk is cut after its last real
column. Tiny model."""

from __future__ import annotations

import pytest
import torch

from saelab.extract.hooks import run_hooks
from saelab.extract.tokens import tokenize
from saelab.forward.edited_rows import EditedChunk, HookActs, rows_per_pass, run_edited_rows
from saelab.forward.losses import next_token_nll
from saelab.forward.resume import resume

HOOK = "blocks.20.hook_resid_pre"
TEXTS = ["The cat sat on the mat.", "import numpy as np", "Bonjour, je suis content de vous voir ici."]


@pytest.fixture(scope="module")
def clean(tiny_model):
    tokenized = tokenize(tiny_model, TEXTS)
    width = max(len(ids) for ids in tokenized.ids)
    tokens = torch.zeros(len(TEXTS), width, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for r, ids in enumerate(tokenized.ids):
        tokens[r, : len(ids)], mask[r, : len(ids)] = torch.tensor(ids), 1
    return HookActs(HOOK, run_hooks(tiny_model, [HOOK], tokens, mask)[HOOK], tokens, mask)


def collect(into: dict):
    def reduce(chunk: EditedChunk) -> None:
        into.setdefault("chunks", []).append((chunk.rows.tolist(), chunk.tokens.shape[1], chunk.from_position))
        for r, row in enumerate(chunk.rows.tolist()):
            into[row] = next_token_nll(chunk.logits[r : r + 1], chunk.tokens[r : r + 1, chunk.from_position :])[0]

    return reduce


def test_a_zero_delta_gives_the_clean_reduction_exactly(tiny_model, clean):
    texts = torch.tensor([2, 0, 1, 2])
    plain, zero = {}, {}
    run_edited_rows(tiny_model, clean, texts, collect(plain), rows_per_chunk=4)
    run_edited_rows(tiny_model, clean, texts, collect(zero), rows_per_chunk=4,
                    deltas=lambda rows: torch.zeros(len(rows), *clean.acts.shape[1:]))  # fmt: skip
    for row in range(4):
        assert torch.equal(plain[row], zero[row])
    logits = resume(tiny_model, HOOK, clean.acts, clean.tokens, attention_mask=clean.attention_mask)
    real = clean.attention_mask[2, 1:].bool()
    expected = next_token_nll(logits, clean.tokens)[2][real]
    torch.testing.assert_close(plain[0][real[: len(plain[0])]], expected, rtol=1e-4, atol=1e-4)


def test_edited_rows_are_their_own_runs_whatever_the_chunking(tiny_model, clean):
    gen = torch.Generator().manual_seed(0)
    texts = torch.tensor([0, 1, 2, 0, 2])
    first = torch.tensor([1, 2, 2, 3, 5])
    deltas = torch.zeros(len(texts), *clean.acts.shape[1:])
    for r, p in enumerate(first.tolist()):
        deltas[r, p:] = torch.randn(deltas.shape[1] - p, deltas.shape[2], generator=gen) * 20
    out = {}
    run_edited_rows(tiny_model, clean, texts, collect(out), rows_per_chunk=2, first=first,
                    deltas=lambda rows: deltas[rows])  # fmt: skip
    # Chunks of two rows; each unembeds from its rows' first edit and stops at its last real column.
    assert [(rows, p0) for rows, _, p0 in out["chunks"]] == [([0, 1], 1), ([2, 3], 2), ([4], 5)]
    lengths = clean.attention_mask.sum(dim=1)
    assert out["chunks"][0][1] == int(lengths[:2].max())
    for r, (t, p) in enumerate(zip(texts.tolist(), first.tolist(), strict=True)):
        n = int(lengths[t])
        alone = resume(tiny_model, HOOK, clean.acts[t : t + 1, :n] + deltas[r : r + 1, :n], clean.tokens[t : t + 1, :n])
        expected = next_token_nll(alone, clean.tokens[t : t + 1, :n])[0]
        p0 = out["chunks"][[r in rows for rows, _, _ in out["chunks"]].index(True)][2]
        torch.testing.assert_close(out[r][: n - 1 - p0], expected[p0:], rtol=1e-4, atol=1e-4)
        assert p0 <= p


def test_rows_per_pass_keeps_the_logits_in_the_budget():
    assert rows_per_pass(3 * 10 * 100 * 4 * 7, width=10, d_vocab=100, blocks=3) == 7
    assert rows_per_pass(1, width=10, d_vocab=100, blocks=3) == 1
