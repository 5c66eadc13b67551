"""extract_features on the real embedded model: masking, padding invariance, BOS, errors."""

import warnings

import pytest
import torch

import saelab
from saelab.extract import TextTooLongWarning, hook_activations, tokenize

HOOK = "blocks.20.hook_resid_pre"

# A short text batched with much longer ones: padding dominates its batch.
SHORT = "Hi!"
LONG_TEXTS = [
    "In the beginning the committee met every Tuesday, but as the project grew the meetings "
    "moved to a larger room, then to a hall, and finally to an online call with hundreds of "
    "participants who rarely turned on their cameras. " * 4,
    "import numpy as np\n\ndef softmax(x, axis=-1):\n    z = x - x.max(axis=axis, keepdims=True)\n"
    "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)\n" * 3,
    "∑_{k=1}^{n} k^2 = n(n+1)(2n+1)/6, and ∫_0^1 x^2 dx = 1/3; hence the mean of k^2 grows like n^2/3.",
]
TEXTS = [SHORT, *LONG_TEXTS, "¿Dónde está la biblioteca? 🤔 #lost"]


@pytest.fixture(scope="module")
def sae(model, make_sae):
    return make_sae(model.cfg.d_model, 256, HOOK, seed=1)


@pytest.mark.parametrize("pooling", ["mean", "max", "sum", "last"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_text_result_does_not_depend_on_its_batch(model, sae, pooling, side):
    alone = torch.cat([saelab.extract_features(model, sae, [t], pooling=pooling) for t in TEXTS])
    batched = saelab.extract_features(model, sae, TEXTS, pooling=pooling, batch_size=8, padding_side=side)
    assert batched.shape == (len(TEXTS), 256)
    assert alone.abs().max() > 0.1  # the comparison is not between zeros
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=0)


def test_left_and_right_padding_agree(model, sae):
    right = saelab.extract_features(model, sae, TEXTS, padding_side="right", batch_size=5)
    left = saelab.extract_features(model, sae, TEXTS, padding_side="left", batch_size=5)
    torch.testing.assert_close(left, right, atol=1e-4, rtol=0)


def test_bos_exclusion(model, sae):
    text = LONG_TEXTS[2]
    with_bos = saelab.extract_features(model, sae, [text], pooling=None, exclude_bos=False)
    without = saelab.extract_features(model, sae, [text], pooling=None, exclude_bos=True)
    assert with_bos.tokens[0][0] == model.tokenizer.bos_token
    assert with_bos.tokens[0][1:] == without.tokens[0]
    dense_with, dense_without = with_bos.dense(0), without.dense(0)
    torch.testing.assert_close(dense_with[1:], dense_without)
    # BOS really is an outlier, which is why it is excluded by default.
    assert dense_with[0].sum() > 5 * dense_without.sum(dim=1).mean()
    mean_with = saelab.extract_features(model, sae, [text], exclude_bos=False)[0]
    mean_without = saelab.extract_features(model, sae, [text])[0]
    torch.testing.assert_close(mean_with, dense_with.mean(0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(mean_without, dense_without.mean(0), atol=1e-4, rtol=1e-5)


def test_per_token_matches_pooled(model, sae):
    per_token = saelab.extract_features(model, sae, TEXTS, pooling=None, batch_size=3)
    pooled = saelab.extract_features(model, sae, TEXTS, pooling="max")
    assert per_token.n_texts == len(per_token) == len(TEXTS)
    torch.testing.assert_close(per_token[-1], per_token.dense(len(TEXTS) - 1))
    for i in range(len(TEXTS)):
        dense = per_token.dense(i)
        assert dense.shape == (len(per_token.tokens[i]), 256)
        torch.testing.assert_close(dense.max(0).values, pooled[i], atol=1e-4, rtol=0)
    frame = per_token.to_frame()
    assert (frame["value"] != 0).all()
    assert set(frame.columns) == {"text", "pos", "token", "feature", "value"}
    row = frame.iloc[len(frame) // 2]
    assert per_token.dense(int(row.text))[int(row.pos), int(row.feature)] == pytest.approx(row.value)
    assert per_token.tokens[int(row.text)][int(row.pos)] == row.token


def test_hook_activations_match_run_with_cache(model):
    tokens = model.to_tokens(LONG_TEXTS[0][:200])
    mask = torch.ones_like(tokens)
    for hook in ("blocks.0.hook_resid_pre", "blocks.7.hook_resid_pre", "blocks.3.hook_mlp_out", "blocks.4.hook_resid_post"):
        _, cache = model.run_with_cache(tokens, names_filter=[hook])
        torch.testing.assert_close(hook_activations(model, hook, tokens, mask), cache[hook])


def test_later_blocks_never_run(model, sae):
    def boom(act, hook):
        raise AssertionError(f"{hook.name} ran, but extraction at {HOOK} should stop before it")

    model.add_hook("blocks.20.hook_attn_out", boom)
    try:
        saelab.extract_features(model, sae, ["Only the first twenty blocks run."])
    finally:
        model.reset_hooks()


def test_long_text_is_truncated_with_warning(model, make_sae):
    early = make_sae(model.cfg.d_model, 32, "blocks.1.hook_resid_pre")
    too_long = "word " * (model.cfg.n_ctx + 50)
    with pytest.warns(TextTooLongWarning, match="truncated"):
        feats = saelab.extract_features(model, early, ["fine", too_long])
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
    with pytest.warns(TextTooLongWarning):
        assert len(tokenize(model, [too_long]).ids[0]) == model.cfg.n_ctx
    with pytest.warns(TextTooLongWarning, match="context of 10 tokens"):
        assert len(tokenize(model, [too_long], max_length=10).ids[0]) == 10


def test_short_texts_do_not_warn(model, sae):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTooLongWarning)
        saelab.extract_features(model, sae, [SHORT])


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
def test_bad_texts(model, sae, texts, error, match):
    with pytest.raises(error, match=match):
        saelab.extract_features(model, sae, texts)


def test_bad_options(model, sae):
    with pytest.raises(ValueError, match="pooling"):
        saelab.extract_features(model, sae, ["x"], pooling="median")
    with pytest.raises(ValueError, match="padding_side"):
        saelab.extract_features(model, sae, ["x"], padding_side="middle")
    with pytest.raises(ValueError, match="batch_size"):
        saelab.extract_features(model, sae, ["x"], batch_size=0)


def test_sae_for_another_model_is_rejected(model, make_sae):
    gpt2_sized = make_sae(768, 16, "blocks.6.hook_resid_pre", model_name="gpt2-small")
    with pytest.raises(ValueError, match=r"d_in=768 does not match .*d_model=576"):
        saelab.extract_features(model, gpt2_sized, ["x"])
    too_deep = make_sae(576, 16, "blocks.40.hook_resid_pre")
    with pytest.raises(ValueError, match="only 30 layers"):
        saelab.extract_features(model, too_deep, ["x"])
    nonsense = make_sae(576, 16, "blocks.3.hook_nonsense")
    with pytest.raises(ValueError, match="no such hook point"):
        saelab.extract_features(model, nonsense, ["x"])


def test_nan_is_reported_not_returned(model, make_sae):
    broken = make_sae(576, 16, "blocks.2.hook_resid_pre")
    with torch.no_grad():
        broken.W_enc[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        saelab.extract_features(model, broken, ["some text"])


def test_dense_vs_sparse(model, sae):
    text = LONG_TEXTS[0][:300]
    view = saelab.dense_vs_sparse(model, sae, text)
    per_token = saelab.extract_features(model, sae, [text], pooling=None)
    assert view.tokens == per_token.tokens[0]
    assert view.resid.shape == (len(view.tokens), model.cfg.d_model)
    assert view.resid_nonzero_frac > 0.99  # the residual stream is dense
    assert 0 < view.feature_active_frac < 0.5
    assert view.l0_per_token.tolist() == (per_token.dense(0) > 0).sum(1).tolist()
    assert view.n_features_active_anywhere == int((per_token.dense(0) > 0).any(0).sum())
