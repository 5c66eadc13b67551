"""saelab.extract.extract: pooled features (a text's result does not depend on its batch or the
padding side, BOS is left out, errors are clear) on the tiny model, why BOS is left out on the
real one, several SAEs from one pass, and pool() on hand-made tensors where every mode equals a
hand computation."""

import pytest
import torch

import saelab
from saelab.extract import extract_features_multi, extract_per_token_multi
from saelab.extract.extract import pool
from tests.extract._helpers import HOOK, LONG_TEXTS, MULTI_TEXTS, TEXTS


@pytest.mark.parametrize("pooling", ["mean", "max", "sum", "last"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_text_result_does_not_depend_on_its_batch(tiny_model, sae, pooling, side):
    alone = torch.cat([saelab.extract_features(tiny_model, sae, [t], pooling=pooling) for t in TEXTS])
    batched = saelab.extract_features(tiny_model, sae, TEXTS, pooling=pooling, batch_size=8, padding_side=side)
    assert batched.shape == (len(TEXTS), 256)
    assert alone.abs().max() > 0.1  # the comparison is not between zeros
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=0)


def test_left_and_right_padding_agree(tiny_model, sae):
    right = saelab.extract_features(tiny_model, sae, TEXTS, padding_side="right", batch_size=5)
    left = saelab.extract_features(tiny_model, sae, TEXTS, padding_side="left", batch_size=5)
    torch.testing.assert_close(left, right, atol=1e-4, rtol=0)


def test_bos_exclusion(tiny_model, sae):
    text = LONG_TEXTS[2]
    with_bos = saelab.extract_per_token(tiny_model, sae, [text], exclude_bos=False)
    without = saelab.extract_per_token(tiny_model, sae, [text], exclude_bos=True)
    assert with_bos.tokens[0][0] == tiny_model.tokenizer.bos_token
    assert with_bos.tokens[0][1:] == without.tokens[0]
    dense_with, dense_without = with_bos.dense(0), without.dense(0)
    torch.testing.assert_close(dense_with[1:], dense_without)
    mean_with = saelab.extract_features(tiny_model, sae, [text], exclude_bos=False)[0]
    mean_without = saelab.extract_features(tiny_model, sae, [text])[0]
    torch.testing.assert_close(mean_with, dense_with.mean(0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(mean_without, dense_without.mean(0), atol=1e-4, rtol=1e-5)


def test_bos_is_an_outlier_in_the_real_model(model, make_sae):
    """Why BOS is excluded by default: SmolLM2's BOS residual is ~100x the others' norm."""
    sae = make_sae(model.cfg.d_model, 256, HOOK, seed=1)
    with_bos = saelab.extract_per_token(model, sae, [LONG_TEXTS[2]], exclude_bos=False)
    dense_with = with_bos.dense(0)
    assert dense_with[0].sum() > 5 * dense_with[1:].sum(dim=1).mean()


def test_bad_options(tiny_model, sae):
    with pytest.raises(ValueError, match="pooling"):
        saelab.extract_features(tiny_model, sae, ["x"], pooling="median")
    with pytest.raises(ValueError, match="padding_side"):
        saelab.extract_features(tiny_model, sae, ["x"], padding_side="middle")
    with pytest.raises(ValueError, match="batch_size"):
        saelab.extract_features(tiny_model, sae, ["x"], batch_size=0)


def test_nan_is_reported_not_returned(tiny_model, make_sae):
    broken = make_sae(tiny_model.cfg.d_model, 16, "blocks.2.hook_resid_pre")
    with torch.no_grad():
        broken.W_enc[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN"):
        saelab.extract_features(tiny_model, broken, ["some text"])


# ---------------------------------------------------------------------------------------
# Several SAEs from one model pass.


def test_multi_equals_one_sae_at_a_time(tiny_model, saes):
    together = extract_features_multi(tiny_model, saes, MULTI_TEXTS, pooling="mean", batch_size=3)
    assert list(together) == list(saes)
    for name, sae in saes.items():
        alone = saelab.extract_features(tiny_model, sae, MULTI_TEXTS, pooling="mean", batch_size=3)
        assert alone.abs().max() > 0.05
        torch.testing.assert_close(together[name], alone, atol=1e-5, rtol=0)


def test_multi_per_token_equals_one_sae_at_a_time(tiny_model, saes):
    together = extract_per_token_multi(tiny_model, saes, MULTI_TEXTS)
    for name, sae in saes.items():
        alone = saelab.extract_per_token(tiny_model, sae, MULTI_TEXTS)
        assert together[name].tokens == alone.tokens
        for i in range(len(MULTI_TEXTS)):
            torch.testing.assert_close(together[name].dense(i), alone.dense(i), atol=1e-5, rtol=0)


def test_multi_rejects_empty_mapping(tiny_model):
    with pytest.raises(ValueError, match="saes is empty"):
        extract_features_multi(tiny_model, {}, MULTI_TEXTS)


# ---------------------------------------------------------------------------------------
# pool() on hand-made tensors.

# 2 texts x 4 positions x 3 features. Text 0 has 3 real tokens, text 1 has 2; the pads carry
# garbage (large values and NaN) that must never leak into a result.
FEATS = torch.tensor(
    [
        [[1.0, 0.0, 2.0], [3.0, 1.0, 0.0], [5.0, 0.0, 4.0], [100.0, 100.0, float("nan")]],
        [[0.0, 2.0, 1.0], [4.0, 6.0, 0.0], [float("nan"), 50.0, 50.0], [70.0, 70.0, 70.0]],
    ]
)


MASK = torch.tensor([[True, True, True, False], [True, True, False, False]])


def test_mean_is_mean_over_real_tokens_only():
    expected = torch.tensor([[3.0, 1 / 3, 2.0], [2.0, 4.0, 0.5]])
    torch.testing.assert_close(pool(FEATS, MASK, "mean"), expected)


def test_sum_max_last():
    torch.testing.assert_close(pool(FEATS, MASK, "sum"), torch.tensor([[9.0, 1.0, 6.0], [4.0, 8.0, 1.0]]))
    torch.testing.assert_close(pool(FEATS, MASK, "max"), torch.tensor([[5.0, 1.0, 4.0], [4.0, 6.0, 1.0]]))
    torch.testing.assert_close(pool(FEATS, MASK, "last"), torch.tensor([[5.0, 0.0, 4.0], [4.0, 6.0, 0.0]]))


def test_last_with_left_padding_takes_the_final_position():
    left_mask = torch.tensor([[False, True, True, True], [False, False, True, True]])
    feats = torch.arange(24, dtype=torch.float).reshape(2, 4, 3)
    torch.testing.assert_close(pool(feats, left_mask, "last"), feats[:, 3])


def test_max_is_correct_for_negative_values():
    feats = -torch.ones(1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(pool(feats, mask, "max"), -torch.ones(1, 2))


def test_empty_mask_row_is_an_error():
    with pytest.raises(ValueError, match="no tokens left"):
        pool(FEATS, torch.tensor([[True, False, False, False], [False] * 4]), "mean")


def test_unknown_pooling():
    with pytest.raises(ValueError, match="Unknown pooling"):
        pool(FEATS, MASK, "median")
