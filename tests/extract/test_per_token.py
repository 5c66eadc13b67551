"""saelab.extract.per_token: PerTokenFeatures (on the tiny model) agree with pooled extraction,
and pooling, dense rows and save/load on hand-made per-token features give known answers."""

import pytest
import torch

import saelab
from saelab.extract import PerTokenFeatures
from tests.extract._helpers import HOOKS, MULTI_TEXTS, TEXTS, hand_made_per_token


def test_per_token_matches_pooled(tiny_model, sae):
    per_token = saelab.extract_per_token(tiny_model, sae, TEXTS, batch_size=3)
    pooled = saelab.extract_features(tiny_model, sae, TEXTS, pooling="max")
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


@pytest.mark.parametrize("pooling", ["mean", "max", "sum", "last"])
def test_pool_from_per_token_matches_extract(tiny_model, saes, pooling):
    sae = saes[HOOKS[1]]
    per_token = saelab.extract_per_token(tiny_model, sae, MULTI_TEXTS)
    pooled = saelab.extract_features(tiny_model, sae, MULTI_TEXTS, pooling=pooling)
    torch.testing.assert_close(per_token.pool(pooling), pooled, atol=1e-4, rtol=1e-5)


def _hand_made() -> PerTokenFeatures:
    # Text 0: two tokens; feature 1 is 2.0 then 4.0, feature 2 is -1.0 on both tokens
    # (negative on every token, so its max is -1, not 0). Text 1: one token, feature 0 = 3.
    return PerTokenFeatures(
        tokens=[["a", "b"], ["c"]],
        token_ids=[[1, 2], [3]],
        d_sae=3,
        row_ptr=torch.tensor([0, 2, 4, 5]),
        feature_idx=torch.tensor([1, 2, 1, 2, 0]),
        values=torch.tensor([2.0, -1.0, 4.0, -1.0, 3.0]),
        text_row_start=torch.tensor([0, 2, 3]),
    )


def test_pool_on_a_hand_made_matrix():
    feats = _hand_made()
    torch.testing.assert_close(feats.pool("sum"), torch.tensor([[0.0, 6.0, -2.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("mean"), torch.tensor([[0.0, 3.0, -1.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("max"), torch.tensor([[0.0, 4.0, -1.0], [3.0, 0.0, 0.0]]))
    torch.testing.assert_close(feats.pool("last"), torch.tensor([[0.0, 4.0, -1.0], [3.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="Unknown pooling"):
        feats.pool("median")


def test_save_and_load_round_trip(tmp_path):
    feats = _hand_made()
    back = PerTokenFeatures.load(feats.save(tmp_path / "entry"))
    assert back.tokens == feats.tokens and back.token_ids == feats.token_ids and back.d_sae == 3
    for name in ("row_ptr", "feature_idx", "values", "text_row_start"):
        assert torch.equal(getattr(back, name), getattr(feats, name))


def test_pooling_the_explorer_uses_known_answers():
    per_token = hand_made_per_token()
    torch.testing.assert_close(per_token.pool("mean"), torch.tensor([[0.5, 0, 2.5, 0], [0, 1.0, 1 / 3, 2 / 3]]))
    torch.testing.assert_close(per_token.pool("max"), torch.tensor([[1.0, 0, 5, 0], [0, 3, 1, 2]]))
    torch.testing.assert_close(per_token.pool("sum"), torch.tensor([[1.0, 0, 5, 0], [0, 3, 1, 2]]))


def test_density_is_the_share_of_stored_tokens_where_each_feature_fires():
    # _hand_made: three tokens; feature 0 fires on one, feature 1 on two, feature 2 on two.
    density = _hand_made().density()
    torch.testing.assert_close(density, torch.tensor([1 / 3, 2 / 3, 2 / 3], dtype=torch.float64))
