"""SmolLM2's and Gemma's real tokenizers on the labelled texts: every text aligns, every word
span gets tokens from both, and a text whose stored tokens are not the tokenizer's is skipped."""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import pytest
import torch

import saelab
from saelab.crossmodel.spans import align_spans, token_offsets, word_spans
from saelab.extract.per_token import PerTokenFeatures
from saelab.extract.tokens import encode_texts
from saelab.models import EMBEDDED_MODELS, gguf_path

pytestmark = pytest.mark.slow


@functools.cache
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gguf = gguf_path(EMBEDDED_MODELS[name])
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _stored(ids: list[list[int]]) -> PerTokenFeatures:
    """Features with no activations, holding ``ids`` as the stored tokens (only the tokens matter here)."""
    lengths = [len(r) for r in ids]
    rows = sum(lengths)
    return PerTokenFeatures(
        tokens=[["t"] * n for n in lengths], token_ids=ids, d_sae=4, row_ptr=torch.zeros(rows + 1, dtype=torch.long),
        feature_idx=torch.zeros(0, dtype=torch.long), values=torch.zeros(0),
        text_row_start=torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()]),
    )  # fmt: skip


def test_both_real_tokenizers_cover_every_word_of_the_labelled_texts() -> None:
    texts, _, _ = saelab.labelled_texts()
    offsets = []
    for name in ("smollm2-135m", "gemma-3-270m"):
        tokenizer = _tokenizer(name)
        fake_model = SimpleNamespace(tokenizer=tokenizer, cfg=SimpleNamespace(model_name=name))
        ids = encode_texts(tokenizer, texts)
        ids[0] = ids[0][::-1]  # text 0's stored tokens are not what the tokenizer gives: skipped, not misaligned
        offsets.append(token_offsets(fake_model, texts, _stored(ids)))  # type: ignore[arg-type]
    alignment = align_spans(texts, *offsets)
    assert dict(alignment.skipped) == {"tokens differ from the extracted features' tokens": 1}
    assert len(alignment.texts) == len(texts) - 1 and alignment.spans_dropped == 0
    assert alignment.n_spans == sum(len(word_spans(t)) for t in texts[1:])
    for kept in alignment.texts[:20]:
        for side in (0, 1):
            assert set(kept.tokens[side][:, 1]) == set(range(kept.n_spans))  # every span has a token on each side
