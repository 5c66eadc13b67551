"""Two made-up tokenizations of the same texts (one cuts every word in two, the other keeps
words whole) with planted features: the span alignment pairs them, and cross-model matching
finds exactly the planted pairs, with the shuffled-span null rejecting the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab.crossmodel import align_spans, match_models, matched_pairs, relative_depth, within_word_shuffle, word_spans
from saelab.crossmodel.matching import paired_correlation
from saelab.crossmodel.spans import SpanSample, span_features
from saelab.extract.per_token import PerTokenFeatures

WORDS = [f"w{chr(97 + i)}{chr(97 + i)}x" for i in range(12)]  # "waax", "wbbx", ...
PLANTED = {0: 7, 1: 3, 2: 9, 3: 0, 4: 5, 5: 1}  # A's feature -> B's feature, each firing on word type j


def _texts(n: int = 120, length: int = 15, seed: int = 0) -> tuple[list[str], list[list[int]]]:
    rng = np.random.default_rng(seed)
    kinds = [rng.integers(0, len(WORDS), size=length).tolist() for _ in range(n)]
    return [" ".join(WORDS[k] for k in row) + "." for row in kinds], kinds


def _halves(text: str) -> list[tuple[int, int]]:
    """Tokenizer A: each word in two pieces (the space joins the first), the full stop alone."""
    out = []
    for start, end in word_spans(text):
        lead = start - 1 if start > 0 and text[start - 1] == " " else start
        mid = (start + end) // 2
        out += [(lead, mid), (mid, end)] if end - start > 1 else [(lead, end)]
    return out


def _wholes(text: str) -> list[tuple[int, int]]:
    """Tokenizer B: one token per word (with its leading space) or punctuation run."""
    return [(s - 1 if s > 0 and text[s - 1] == " " else s, e) for s, e in word_spans(text)]


def _per_token(rows: list[np.ndarray]) -> PerTokenFeatures:
    """PerTokenFeatures from dense [pos, d_sae] arrays, one per text."""
    dense = torch.from_numpy(np.concatenate(rows)).float()
    nz = dense != 0
    counts = nz.sum(dim=1)
    idx = nz.nonzero()
    lengths = [len(r) for r in rows]
    return PerTokenFeatures(
        tokens=[["t"] * n for n in lengths], token_ids=[list(range(n)) for n in lengths], d_sae=dense.shape[1],
        row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]), feature_idx=idx[:, 1],
        values=dense[nz], text_row_start=torch.tensor([0, *np.cumsum(lengths).tolist()]),
    )  # fmt: skip


def _planted(texts, kinds, d_a=200, d_b=160, seed=1):
    """A's feature j fires on the second half of word type j; B's PLANTED[j] on the whole word.
    Every other feature fires at random on its own tokens."""
    rng = np.random.default_rng(seed)
    rows_a, rows_b = [], []
    for text, row in zip(texts, kinds, strict=True):
        a = np.zeros((len(_halves(text)), d_a), np.float32)
        b = np.zeros((len(_wholes(text)), d_b), np.float32)
        for w, kind in enumerate(row):
            if kind in PLANTED:
                a[2 * w + 1, kind] = 1 + rng.random()
                b[w, PLANTED[kind]] = 1 + rng.random()
        free_a, free_b = (
            [f for f in range(d_a) if f not in PLANTED],
            [f for f in range(d_b) if f not in PLANTED.values()],
        )
        a[:, free_a] = (rng.random((len(a), len(free_a))) < 0.1) * rng.random((len(a), len(free_a)))
        b[:, free_b] = (rng.random((len(b), len(free_b))) < 0.1) * rng.random((len(b), len(free_b)))
        rows_a.append(a)
        rows_b.append(b)
    return _per_token(rows_a), _per_token(rows_b)


def _sample(texts, kinds):
    pt_a, pt_b = _planted(texts, kinds)
    alignment = align_spans(texts, [_halves(t) for t in texts], [_wholes(t) for t in texts])
    features = {"a": {"blocks.2.hook_resid_pre": span_features(pt_a, alignment, 0)},
                "b": {"blocks.3.hook_resid_pre": span_features(pt_b, alignment, 1)}}  # fmt: skip
    return SpanSample(features, alignment)


def test_spans_pool_both_tokenizations_onto_the_same_words() -> None:
    texts, kinds = _texts(n=3)
    sample = _sample(texts, kinds)
    assert sample.n_spans == 3 * 16  # 15 words and a full stop per text, none skipped
    a, b = sample.features["a"]["blocks.2.hook_resid_pre"], sample.features["b"]["blocks.3.hook_resid_pre"]
    words = [k for row in kinds for k in [*row, -1]]
    for span, kind in enumerate(words):
        if kind in PLANTED:
            assert a[span, kind] > 1 and b[span, PLANTED[kind]] > 1
        else:
            assert a[span, list(PLANTED)].nnz == 0 and b[span, list(PLANTED.values())].nnz == 0


def test_matching_across_models_finds_the_planted_pairs_and_the_null_the_rest() -> None:
    texts, kinds = _texts()
    found = match_models(_sample(texts, kinds), {"a": {"blocks.2.hook_resid_pre": 0.5},
                                                 "b": {"blocks.3.hook_resid_pre": 0.5}})  # fmt: skip
    matches = found.matches[("blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre")]
    pairs = matched_pairs(matches)
    found_pairs = dict(zip(pairs["feature_a"], pairs["feature_b"], strict=True))
    assert {a: found_pairs.get(a) for a in PLANTED} == PLANTED
    assert (pairs.set_index("feature_a").loc[list(PLANTED), "similarity"] > 0.9).all()
    false = len(found_pairs) - len(PLANTED)
    row = found.grid.iloc[0]
    # The threshold is the null's 99th percentile of best matches: about 1% of unrelated features pass.
    assert false <= 0.03 * (200 - len(PLANTED)) and row["null_rate"] <= 0.03
    assert row["matched_share"] == pytest.approx(len(found_pairs) / 200)
    assert found.share_matrix().shape == (1, 1)


def test_texts_that_cannot_be_aligned_are_skipped_and_counted() -> None:
    texts, _ = _texts(n=4)
    texts = [*texts, "   ", "...", "tail cut"]
    offsets_a = [_halves(t) for t in texts]
    offsets_b = [_wholes(t) for t in texts]
    offsets_a[0] = None  # its tokens are not the extracted ones
    offsets_b[5] = []  # no tokens at all for one model
    offsets_b[6] = offsets_b[6][:1]  # the second word lies past one model's context
    alignment = align_spans(texts, offsets_a, offsets_b)
    assert [t.text for t in alignment.texts] == [1, 2, 3, 6]
    assert dict(alignment.skipped) == {"tokens differ from the extracted features' tokens": 1,
                                       "no word or punctuation (empty or whitespace)": 1,
                                       "one model has no tokens for it": 1}  # fmt: skip
    assert alignment.spans_dropped == 1 and alignment.texts[-1].n_spans == 1


def test_bad_input_is_refused() -> None:
    texts, _ = _texts(n=2)
    with pytest.raises(ValueError, match="offset lists"):
        align_spans(texts, [[]], [[], []])
    with pytest.raises(ValueError, match="names no layer"):
        relative_depth("hook_embed", 30)
    with pytest.raises(ValueError, match="depths must name"):
        match_models(_sample(texts, _texts(n=2)[1]), {"a": {}})
    assert relative_depth("blocks.12.hook_resid_pre", 18) == pytest.approx(2 / 3)


def _lexical_and_context(texts, kinds, d=200, seed=3):
    """A's and B's features 0-9 fire on word type j (lexical pairs, independent magnitudes);
    feature 10 of both fires on word type 11 only after word type 0 (a context pair). The rest
    fire at random."""
    rng = np.random.default_rng(seed)
    rows_a, rows_b = [], []
    for text, row in zip(texts, kinds, strict=True):
        a = (rng.random((len(_halves(text)), d)) < 0.1) * rng.random((len(_halves(text)), d))
        b = (rng.random((len(_wholes(text)), d)) < 0.1) * rng.random((len(_wholes(text)), d))
        a[:, :11], b[:, :11] = 0, 0
        for w, kind in enumerate(row):
            if kind < 10:
                a[2 * w + 1, kind], b[w, kind] = 1 + rng.random(), 1 + rng.random()
            elif kind == 11 and w > 0 and row[w - 1] == 0:
                a[2 * w + 1, 10], b[w, 10] = 1 + rng.random(), 1 + rng.random()
        rows_a.append(a.astype(np.float32))
        rows_b.append(b.astype(np.float32))
    return _per_token(rows_a), _per_token(rows_b)


def test_the_word_keeping_null_separates_context_from_word_identity() -> None:
    texts, kinds = _texts(n=200)
    pt_a, pt_b = _lexical_and_context(texts, kinds)
    alignment = align_spans(texts, [_halves(t) for t in texts], [_wholes(t) for t in texts])
    hook_a, hook_b = "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre"
    features = {"a": {hook_a: span_features(pt_a, alignment, 0)}, "b": {hook_b: span_features(pt_b, alignment, 1)}}
    words = alignment.words(texts)
    assert words[:16] == [*(WORDS[k] for k in kinds[0]), "."]
    depths = {"a": {hook_a: 0.5}, "b": {hook_b: 0.5}}
    found = match_models(SpanSample(features, alignment, words), depths)
    row = found.grid.iloc[0]
    best = found.matches[(hook_a, hook_b)].best
    # The shuffled-span null passes all eleven planted pairs, lexical or not.
    assert (best.loc[range(11), "best_match"].to_numpy() == np.arange(11)).all()
    assert best.loc[range(11), "matched"].all()
    # Ten of the eleven keep their correlation when B's spans move among the same word; the
    # context pair, and nothing else, loses it.
    active = int(row["active_a"])
    assert row["matched_share_beyond_words"] == pytest.approx(1 / active)
    assert row["word_retained"] > 0.9
    # Without words the grid has no word-null columns.
    assert "word_retained" not in match_models(SpanSample(features, alignment), depths).grid


def test_paired_correlation_is_pearsons_per_column() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    x = (rng.random((50, 4)) < 0.3) * rng.random((50, 4))
    y = x + 0.2 * rng.random((50, 4))
    y[:, 3] = 0  # constant: correlation 0, not NaN
    got = paired_correlation(sp.csr_matrix(x), sp.csr_matrix(y))
    want = [np.corrcoef(x[:, i], y[:, i])[0, 1] for i in range(3)]
    assert got[:3] == pytest.approx(want) and got[3] == 0


def test_the_word_keeping_shuffle_moves_rows_only_among_the_same_word() -> None:
    import scipy.sparse as sp

    words = ["a", "b", "a", "c", "b", "a"]
    acts = sp.csr_matrix(np.arange(6, dtype=np.float32)[:, None] + 1)
    moved = within_word_shuffle(acts, words, seed=0).toarray()[:, 0].astype(int) - 1
    assert [words[i] for i in moved] == words and sorted(moved) == list(range(6))
    with pytest.raises(ValueError, match="one word per span"):
        within_word_shuffle(acts, words[:5], seed=0)
