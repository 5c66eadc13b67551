"""saelab.extract.batches: length-sorted batches mask pads and BOS on either padding side, and
a memory budget splits them."""

import pytest

from saelab.extract.batches import iter_batches
from saelab.extract.tokens import Tokenized


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
