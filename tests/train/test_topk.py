"""TopK + AuxK: the k largest per token, AuxK on dead latents by hand, and the fast kernel
against the reference, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from saelab.train import make_sae

from ._helpers import (
    DEVICES,
    assert_bfloat16_kernels_agree,
    assert_same_step,
    randomised,
    run_kernel,
    set_weights,
    tiny,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_keeps_exactly_the_k_largest():
    sae = randomised(tiny("topk", k=3))
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so the ReLU drops none
    x = torch.randn(20, 8)
    feats = sae.encode(x)
    assert ((feats > 0).sum(-1) == 3).all()
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    kept = feats > 0
    # every kept pre-activation beats every dropped one, row by row
    weakest_kept = pre.masked_fill(~kept, float("inf")).min(-1).values
    strongest_dropped = pre.masked_fill(kept, float("-inf")).max(-1).values
    assert (weakest_kept > strongest_dropped).all()
    torch.testing.assert_close(feats[kept], pre[kept])


def test_drops_negative_winners():
    sae = randomised(tiny("topk", k=3))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    assert (sae.encode(torch.randn(5, 8)) == 0).all()


def test_post_step_normalises_decoder_rows():
    sae = randomised(tiny("topk"))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 3, 16)[:, None])
    sae.post_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_auxk_zero_without_dead_latents_positive_with(kernel):
    cfg = tiny("topk", kernel=kernel, aux_k=4, dead_tokens_threshold=100, aux_coefficient=1.0)
    sae = randomised(cfg)
    sae.eval()
    x = torch.randn(32, 8)
    assert sae.forward_train(x).losses["aux"].item() == 0.0

    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 4, 6, 9, 11, 15]] = True
    sae.tokens_since_fired[dead] = 100
    out = sae.forward_train(x)
    assert out.losses["aux"].item() > 0
    out.losses["aux"].backward()
    assert sae.W_dec.grad is not None
    rows_with_grad = sae.W_dec.grad.abs().sum(1) > 0
    assert rows_with_grad.any() and not (rows_with_grad & ~dead).any()  # only dead latents' decoders learn


def test_auxk_scale_and_by_hand():
    """aux = coef * min(n_dead/aux_k, 1) * mean ||e_hat - (x - x_hat)||^2, e_hat from the top dead latents."""
    cfg = tiny("topk", d_in=3, d_sae=3, k=1, aux_k=2, dtype="float64", aux_coefficient=0.5, dead_tokens_threshold=1)
    sae = make_sae(cfg)
    set_weights(sae, torch.eye(3), torch.eye(3))
    sae.eval()
    sae.tokens_since_fired[2] = 1  # one dead latent out of aux_k = 2: scale 1/2
    x = torch.tensor([[3.0, 1.0, -2.0]], dtype=torch.float64)
    out = sae.forward_train(x)
    # top-1 keeps latent 0; residual = [0, 1, -2]; the dead latent 2 (no ReLU) gives e_hat = [0, 0, -2]
    assert out.losses["mse"].item() == pytest.approx(1 + 4)
    assert out.losses["aux"].item() == pytest.approx(0.5 * 0.5 * 1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_dead", [0, 5, 16])
def test_fast_matches_reference(n_dead, device):
    cfg = tiny("topk", k=4, aux_k=6, dtype="float64", aux_coefficient=0.3, dead_tokens_threshold=1, device=device)
    sae = randomised(cfg)
    sae.eval()
    sae.tokens_since_fired[:n_dead] = 1
    x = torch.randn(32, 8, dtype=torch.float64)
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "aux"})
    assert (fast[0].losses["aux"] > 0) == (n_dead > 0)
    assert set(fast[1]) == {"W_enc", "b_enc", "W_dec", "b_dec"}


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_reference_in_bfloat16(device):
    cfg = tiny("topk", k=4, compute_dtype="bfloat16", aux_k=6, dead_tokens_threshold=1, device=device)
    assert_bfloat16_kernels_agree(randomised(cfg))
