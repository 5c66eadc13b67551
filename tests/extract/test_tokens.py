"""saelab.extract.tokens: the one tokenization policy. Too-long texts are truncated with a
warning, bad text lists get clear errors, and token strings rebuild characters split across
tokens."""

import warnings

import pytest
import torch

import saelab
from saelab.extract import TextTooLongWarning, tokenize
from tests.extract._helpers import SHORT


def test_long_text_is_truncated_with_warning(tiny_model, make_sae):
    early = make_sae(tiny_model.cfg.d_model, 32, "blocks.1.hook_resid_pre")
    too_long = "word " * (tiny_model.cfg.n_ctx + 50)
    with pytest.warns(TextTooLongWarning, match="truncated"):
        feats = saelab.extract_features(tiny_model, early, ["fine", too_long])
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
    with pytest.warns(TextTooLongWarning):
        assert len(tokenize(tiny_model, [too_long]).ids[0]) == tiny_model.cfg.n_ctx
    with pytest.warns(TextTooLongWarning, match="max_length=10 tokens"):
        assert len(tokenize(tiny_model, [too_long], max_length=10).ids[0]) == 10


def test_the_warning_counts_the_texts_cut_and_the_tokens_dropped(tiny_model):
    texts = ["fine", "word " * 30, "also fine", "word " * 40]
    full = [len(row) for row in tokenize(tiny_model, texts).ids]  # well inside the context: no warning
    with pytest.warns(TextTooLongWarning) as caught:
        cut = tokenize(tiny_model, texts, max_length=12)
    assert [len(row) for row in cut.ids] == [min(n, 12) for n in full] and cut.truncated == [1, 3]
    dropped = full[1] + full[3] - 24
    assert str(caught[0].message) == (
        f"2 of 4 text(s) exceed max_length=12 tokens and were truncated, dropping {dropped} token(s) (indices [1, 3])."
    )


def test_short_texts_do_not_warn(tiny_model, sae):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTooLongWarning)
        saelab.extract_features(tiny_model, sae, [SHORT])


@pytest.mark.parametrize(
    "texts, error, match",
    [
        ([], ValueError, "empty"),
        (["fine", ""], ValueError, r"texts \[1\] are empty"),
        (["fine", "   \n"], ValueError, "whitespace"),
        ("a single string", TypeError, "list of strings"),
        (["fine", 3], TypeError, "strings"),
    ],
)
def test_bad_texts(tiny_model, sae, texts, error, match):
    with pytest.raises(error, match=match):
        saelab.extract_features(tiny_model, sae, texts)


def test_token_strings_rebuild_split_characters(tiny_model):
    from saelab.extract.tokens import token_strings

    text = "ça va 😂 中文 Привет"
    ids = tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    shown = token_strings(tiny_model, ids)
    assert "".join(shown) == text and "\ufffd" not in "".join(shown)
    assert "😂" in shown and "П" in shown
    alone = token_strings(tiny_model, ids, contiguous=False)
    assert any("\\x" in piece for piece in alone)  # partial characters shown as escaped bytes


SPECIAL_TEXT = "A chat log: user says hi <|im_end|> and then <|endoftext|> ends it."


def test_one_policy_for_analysis_and_training_on_special_token_strings(tiny_model, make_sae):
    """A text holding special-token strings is tokenized the same way for analysis (feature
    extraction) and for training (the activation store), and those strings stay text: as
    real special tokens they would be attention sinks (they differed before)."""
    from saelab.extract.tokens import encode_texts
    from saelab.store.pack import tokenize_corpus

    tokenizer = tiny_model.tokenizer
    special = set(tokenizer.all_special_ids)
    analysed = tokenize(tiny_model, [SPECIAL_TEXT]).ids[0]
    assert analysed[0] == tokenizer.bos_token_id and not special & set(analysed[1:])
    assert analysed[1:] == encode_texts(tokenizer, [SPECIAL_TEXT])[0]
    row = tokenize_corpus([SPECIAL_TEXT], tokenizer, len(analysed) + 1, tokenizer.bos_token_id)[0].tolist()
    assert row == [*analysed, tokenizer.eos_token_id]  # the store's row: BOS, the same ids, the separator
    sae = make_sae(tiny_model.cfg.d_model, 32, "blocks.15.hook_resid_pre")
    per_token = saelab.extract_per_token(tiny_model, sae, [SPECIAL_TEXT])
    assert "".join(per_token.tokens[0]) == SPECIAL_TEXT
