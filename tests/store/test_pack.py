"""saelab.store.pack: documents packed into fixed-length rows with BOS and separators, and the
mask of which positions get stored."""

from __future__ import annotations

import pytest
import torch

from saelab.extract.tokens import encode_texts as encode
from saelab.store.pack import keep_mask, tokenize_corpus


def test_tokenize_corpus_packs_documents_with_bos_and_separators(tiny_model):
    tok = tiny_model.tokenizer
    docs = ["The cat sat on the mat.", "def f(x):\n    return x + 1", "Bonjour à tous !"] * 4
    rows = tokenize_corpus(docs, tok, seq_len=8, bos_id=tok.bos_token_id)
    stream = [t for ids in encode(tok, docs) for t in [*ids, tok.eos_token_id]]
    assert rows.shape == (len(stream) // 7, 8)
    assert (rows[:, 0] == tok.bos_token_id).all()
    # Each row continues the packed stream where the previous one stopped.
    assert rows[:, 1:].reshape(-1).tolist() == stream[: rows.shape[0] * 7]
    assert tokenize_corpus(docs, tok, 8, tok.bos_token_id, n_seq=2).tolist() == rows[:2].tolist()
    with pytest.raises(ValueError, match="fill only"):
        tokenize_corpus(docs, tok, 8, tok.bos_token_id, n_seq=10_000)


def test_keep_mask_drops_position_zero_and_special_tokens_after_it():
    tokens = torch.tensor([[1, 5, 2, 6], [1, 7, 8, 0]])
    mask = keep_mask(tokens, exclude_bos=True, excluded_ids=[0, 1, 2])
    assert mask.tolist() == [[False, True, False, True], [False, True, True, False]]
    assert keep_mask(tokens, exclude_bos=False, excluded_ids=[1]).tolist() == [[True] * 4, [True] * 4]
