"""What every architecture shares: encode/decode, dead-latent bookkeeping, initialisation,
b_dec init, input checks, and state that survives a state_dict round trip."""

from __future__ import annotations

import pytest
import torch

from saelab.train import make_sae
from saelab.train.base import geometric_median
from saelab.train.batchtopk import TrainableBatchTopKSAE
from saelab.train.jumprelu import TrainableJumpReLUSAE

from ._helpers import ARCHITECTURES, narrow, randomised, tiny


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the tests draw inputs from the global RNG; keep them repeatable


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_decode_encode_matches_training_forward(activation):
    sae = randomised(tiny(activation))
    x = torch.randn(10, 8)
    out = sae.forward_train(x)
    torch.testing.assert_close(sae.decode(sae.encode(x)), out.x_hat)
    torch.testing.assert_close(sae.encode(x), out.feats)


@pytest.mark.parametrize("activation", ARCHITECTURES)
def test_encode_takes_any_leading_shape(activation):
    sae = randomised(tiny(activation))
    x = torch.randn(2, 5, 8)
    assert sae.encode(x).shape == (2, 5, 16) and sae(x).shape == (2, 5, 8)
    torch.testing.assert_close(sae.encode(x).reshape(10, 16), sae.encode(x.reshape(10, 8)))


def test_dead_latent_tracking_in_tokens():
    sae = randomised(tiny("topk", k=3, dead_tokens_threshold=10))
    x = torch.randn(4, 8)  # 4 tokens x k=3: at least 4 of the 16 latents cannot fire
    sae.eval()
    sae.forward_train(x)
    assert (sae.tokens_since_fired == 0).all()  # eval mode leaves the statistics alone
    sae.train()
    out = sae.forward_train(x)
    assert (sae.tokens_since_fired[out.fired] == 0).all()
    assert (sae.tokens_since_fired[~out.fired] == 4).all()
    assert not sae.dead_mask().any()
    sae.forward_train(x)
    sae.forward_train(x)
    # 12 tokens later, the latents that never fired have crossed the 10-token threshold
    assert torch.equal(sae.dead_mask(), ~out.fired) and (~out.fired).sum() >= 4


def test_initialisation():
    sae = make_sae(tiny("topk", d_in=8, d_sae=32))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.t())
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()
    jump = narrow(make_sae(tiny("jumprelu", jumprelu_init_threshold=0.25)), TrainableJumpReLUSAE)
    assert (jump.threshold == 0.25).all()
    assert float(narrow(make_sae(tiny("batchtopk")), TrainableBatchTopKSAE).topk_threshold) == 0.0


def test_same_seed_same_init_on_every_architecture():
    # One generator draws the shared weights, so the architectures start from the same point.
    first = make_sae(tiny("relu", d_sae=32))
    for activation in ARCHITECTURES[1:]:
        torch.testing.assert_close(make_sae(tiny(activation, d_sae=32)).W_enc, first.W_enc)
    assert not torch.equal(make_sae(tiny("topk", seed=1)).W_enc, make_sae(tiny("topk")).W_enc)


def test_init_b_dec_geometric_median_resists_outliers():
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [1000.0]]) * torch.tensor([[1.0, 2.0]])
    # on a line the geometric median is the ordinary median, here (2, 4)
    torch.testing.assert_close(geometric_median(points).float(), torch.tensor([2.0, 4.0]), atol=1e-3, rtol=0)
    sae = make_sae(tiny("topk", d_in=2, d_sae=4))
    sae.init_b_dec(points, method="mean")
    torch.testing.assert_close(sae.b_dec, points.mean(0))
    sae.init_b_dec(points)
    torch.testing.assert_close(sae.b_dec, torch.tensor([2.0, 4.0]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="geometric_median"):
        sae.init_b_dec(points, method="median")  # type: ignore[arg-type]


def test_forward_train_rejects_bad_input():
    sae = make_sae(tiny("topk"))
    with pytest.raises(ValueError, match="d_in=8"):
        sae.forward_train(torch.randn(4, 7))
    with pytest.raises(ValueError, match=r"\[batch, d_in\]"):
        sae.forward_train(torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="finite positive"):
        sae.set_input_scale(0.0)


@pytest.mark.parametrize("activation", ARCHITECTURES)
def test_state_dict_round_trip_resumes_the_same_module(activation):
    sae = randomised(tiny(activation))
    sae.train()
    sae.forward_train(torch.randn(32, 8))  # moves the running statistics
    sae.tokens_since_fired[:3] = 7
    sae.set_input_scale(0.5)
    clone = make_sae(sae.cfg)
    clone.load_state_dict(sae.state_dict())
    for name, value in sae.state_dict().items():
        assert torch.equal(clone.state_dict()[name], value), name
    x = torch.randn(6, 8)
    torch.testing.assert_close(clone.encode(x), sae.encode(x))


def test_repr_names_the_architecture():
    assert "activation='topk', d_in=8, d_sae=16, k=3" in repr(make_sae(tiny("topk")))
    assert "tied_decoder=True" in repr(make_sae(tiny("relu", tied_decoder=True)))
