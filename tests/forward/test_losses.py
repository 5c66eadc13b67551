"""saelab.forward.losses: the one next-token loss equals PyTorch's cross-entropy, is fp32 and
differentiable; the continuation log-probabilities read each row's last tokens under right and
left padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saelab.forward.losses import last_token_logprobs, next_token_nll, prediction_mask


def test_next_token_nll_is_cross_entropy_at_every_position():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 6, 11, generator=gen) * 4).to(torch.bfloat16).requires_grad_()
    tokens = torch.randint(0, 11, (3, 6), generator=gen)
    nll = next_token_nll(logits, tokens)
    expected = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, 11), tokens[:, 1:].reshape(-1), reduction="none"
    ).reshape(3, 5)
    assert nll.dtype == torch.float32 and nll.shape == (3, 5)
    torch.testing.assert_close(nll, expected)
    (grad,) = torch.autograd.grad(nll.sum(), [logits])
    assert grad[:, -1].abs().sum() == 0 and grad[:, :-1].abs().sum() > 0


def test_prediction_mask_needs_both_ends_real():
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    assert prediction_mask(mask).tolist() == [[True, True, False], [False, True, True]]


def test_last_token_logprobs_read_each_rows_own_end():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 7, generator=gen)
    tokens = torch.randint(0, 7, (2, 5), generator=gen)
    logp = F.log_softmax(logits, dim=-1)
    right = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    first, second = last_token_logprobs(logits, tokens, right, [2, 0])
    torch.testing.assert_close(first, torch.stack([logp[0, 1, tokens[0, 2]], logp[0, 2, tokens[0, 3]]]))
    assert second.numel() == 0
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    (last,) = last_token_logprobs(logits[:1], tokens[:1], left[:1], [1])
    torch.testing.assert_close(last, logp[0, 3, tokens[0, 4]][None])
    with pytest.raises(ValueError, match="cannot score its last 3"):
        last_token_logprobs(logits[:1], tokens[:1], left[:1], [3])
    with pytest.raises(ValueError, match="n_last has 1 entries for 2 rows"):
        last_token_logprobs(logits, tokens, right, [1])
