"""Pooling and masking on hand-made tensors: every mode equals a hand computation."""

import pytest
import torch

from saelab.extract import Tokenized, iter_batches, pool

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


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("exclude_bos", [True, False])
def test_batches_mask_pads_and_bos(side, exclude_bos):
    tok = Tokenized(ids=[[1, 10, 11], [1, 20, 21, 22, 23], [1, 30]], has_bos=True, truncated=[])
    batches = list(iter_batches(tok, batch_size=2, padding_side=side, exclude_bos=exclude_bos, d_sae=4))
    seen = {}
    for b in batches:
        for row, i in enumerate(b.index.tolist()):
            ids = tok.ids[i]
            real = b.attention_mask[row].bool()
            assert b.tokens[row][real].tolist() == ids
            pooled_ids = b.tokens[row][b.pool_mask[row]].tolist()
            assert pooled_ids == (ids[1:] if exclude_bos else ids)
            # Pads sit on the requested side.
            first_real = int(real.nonzero()[0])
            assert (first_real == 0) if side == "right" else (first_real == real.numel() - len(ids))
            seen[i] = True
    assert sorted(seen) == [0, 1, 2]
    # Length-sorted: the longest text comes first.
    assert batches[0].index[0].item() == 1


def test_memory_budget_splits_batches():
    tok = Tokenized(ids=[[1] + [5] * 99 for _ in range(8)], has_bos=True, truncated=[])
    # 100 positions x 1000 features x 4 bytes = 400 kB per text; a 1 MB budget fits 2.
    batches = list(iter_batches(tok, 16, "right", True, d_sae=1000, max_batch_bytes=10**6))
    assert [len(b.index) for b in batches] == [2, 2, 2, 2]
