"""JumpReLU + L0: the gate by hand, straight-through threshold gradients, constraints."""

from __future__ import annotations

import pytest
import torch

from saelab.train import make_sae
from saelab.train.jumprelu import TrainableJumpReLUSAE

from ._helpers import narrow, randomised, set_weights, tiny


def _jump(*, randomise: bool = False, **kw) -> TrainableJumpReLUSAE:
    cfg = tiny("jumprelu", **kw)
    return narrow(randomised(cfg) if randomise else make_sae(cfg), TrainableJumpReLUSAE)


def test_forward_by_hand():
    sae = _jump(d_in=4, d_sae=4, dtype="float64", l0_coefficient=2.0)
    set_weights(sae, torch.eye(4), torch.eye(4))
    with torch.no_grad():
        sae.threshold.copy_(torch.tensor([0.5, 0.5, 1.0, 0.0]))
    x = torch.tensor([[0.6, 0.4, 1.0, -1.0]], dtype=torch.float64)
    out = sae.forward_train(x)
    # kept only where pre > threshold (strictly): 0.6 > 0.5; 0.4 < 0.5; 1.0 == 1.0; -1 < 0
    torch.testing.assert_close(out.feats, torch.tensor([[0.6, 0.0, 0.0, 0.0]], dtype=torch.float64))
    assert out.losses["l0"].item() == pytest.approx(2.0 * 1)
    torch.testing.assert_close(sae.encode(x), out.feats)


def test_threshold_gradient_only_within_bandwidth():
    bw = 0.2
    sae = _jump(d_in=4, d_sae=4, dtype="float64", l0_coefficient=1.0, jumprelu_bandwidth=bw)
    set_weights(sae, torch.eye(4), torch.eye(4))
    with torch.no_grad():
        sae.threshold.fill_(1.0)
    # pre = x: latents 0 and 1 sit inside (1 - bw/2, 1 + bw/2), latents 2 and 3 outside
    x = torch.tensor([[1.05, 0.95, 1.5, 0.5]], dtype=torch.float64)
    sae.forward_train(x).losses["l0"].backward()
    # d/dtheta of H(pre - theta) is estimated as -(1/bw) K((pre - theta)/bw)
    torch.testing.assert_close(sae.threshold.grad, torch.tensor([-1 / bw, -1 / bw, 0.0, 0.0], dtype=torch.float64))
    assert sae.W_enc.grad is None or (sae.W_enc.grad == 0).all()  # the L0 term trains thresholds only

    sae.zero_grad()
    with torch.no_grad():
        sae.W_dec.copy_(2 * torch.eye(4))
    sae.forward_train(x).losses["mse"].backward()
    # feats = [1.05, 0, 1.5, 0], x_hat = 2 * feats, dL/dfeat = 2 * (x_hat - x) @ W_dec.T
    dL_dfeat = torch.tensor([4.2, -3.8, 6.0, -2.0], dtype=torch.float64)
    # the JumpReLU estimate -(theta/bw) K((pre - theta)/bw) dL/dfeat: nonzero only in the window
    expected = torch.tensor([-dL_dfeat[0] / bw, -dL_dfeat[1] / bw, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(sae.threshold.grad, expected)


def test_post_step_normalises_decoder_and_clamps_thresholds():
    sae = _jump(randomise=True)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 3, 16)[:, None])
        sae.threshold[:3] = -1.0
    sae.post_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
    assert (sae.threshold >= 0).all() and (sae.threshold[:3] == 0).all()


def test_both_kernel_settings_run_the_same_dense_step():
    sae = _jump(randomise=True)
    x = torch.randn(16, 8)
    fast, ref = sae.forward_train(x, kernel="fast"), sae.forward_train(x, kernel="reference")
    assert torch.equal(fast.x_hat, ref.x_hat) and torch.equal(fast.loss, ref.loss)
