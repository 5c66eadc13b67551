"""BatchTopK + AuxK: the batch keeps its k x batch largest activations, the inference
threshold follows SAELens's moving average, and the fast kernel matches the reference."""

from __future__ import annotations

import pytest
import torch

from saelab.train import TrainConfig, make_sae
from saelab.train.batchtopk import TrainableBatchTopKSAE

from ._helpers import (
    DEVICES,
    assert_bfloat16_kernels_agree,
    assert_same_step,
    narrow,
    randomised,
    run_kernel,
    set_weights,
    tiny,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _btk(cfg: TrainConfig, *, randomise: bool = True) -> TrainableBatchTopKSAE:
    return narrow(randomised(cfg) if randomise else make_sae(cfg), TrainableBatchTopKSAE)


def _pre(sae: TrainableBatchTopKSAE, x: torch.Tensor) -> torch.Tensor:
    return (x.to(sae.dtype) - sae.b_dec) @ sae.W_enc + sae.b_enc


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_the_batch_keeps_its_k_times_batch_largest(kernel):
    sae = _btk(tiny("batchtopk", k=3, dtype="float64"))
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so the ReLU drops none
    x = torch.randn(20, 8, dtype=torch.float64)
    x[0] *= 5  # a loud token, which should take more than its share
    feats = sae.forward_train(x, kernel=kernel).feats.detach()
    kept = feats > 0
    assert kept.sum() == 3 * 20
    counts = kept.sum(1)
    assert counts[0] > 3 and counts.min() < 3  # k on average, not per token
    pre = _pre(sae, x).detach()
    assert pre[kept].min() > pre[~kept].max()  # over the whole batch, not row by row
    torch.testing.assert_close(feats[kept], pre[kept])


def test_selection_matches_sae_lens_batchtopk():
    """The same pre-activations through SAELens's BatchTopK activation give the same feats."""
    BatchTopK = pytest.importorskip("sae_lens.saes.batchtopk_sae").BatchTopK
    sae = _btk(tiny("batchtopk", k=4, dtype="float64"))
    x = torch.randn(24, 8, dtype=torch.float64)
    ours = sae.forward_train(x, kernel="reference").feats.detach()
    theirs = BatchTopK(4)(_pre(sae, x).detach())
    # The same entries are kept; their values may differ by the last bits, because the two
    # libraries reach the pre-activations through different BLAS calls (a few ulps of float64).
    assert torch.equal(ours > 0, theirs > 0)
    torch.testing.assert_close(ours, theirs, rtol=8 * torch.finfo(torch.float64).eps, atol=0)
    assert (ours == 0).any() and (ours > 0).sum() <= 4 * 24


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_dead", [0, 5, 16])
@pytest.mark.parametrize("k", [4, 2])  # k=2: fewer candidates than latents, so two-stage selection
def test_fast_matches_reference(n_dead, device, k):
    cfg = tiny("batchtopk", k=k, aux_k=6, dtype="float64", aux_coefficient=0.3, dead_tokens_threshold=1, device=device)
    sae = _btk(cfg)
    sae.eval()
    sae.tokens_since_fired[:n_dead] = 1
    x = torch.randn(32, 8, dtype=torch.float64)
    x[:2] *= 4  # tokens with many kept latents ...
    x[-3:] = sae.b_dec.detach().to(x.device)  # ... beside tokens with none (their pre-activations are just b_enc)
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "aux"})
    assert (fast[0].losses["aux"] > 0) == (n_dead > 0)
    counts = (ref[0].feats > 0).sum(1)
    assert counts.max() > k and counts.min() == 0
    if k == 2:  # a loud token took more than its 4k candidates, so it was searched whole
        assert counts.max() > 4 * k
    assert set(fast[1]) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    assert fast[0].dense_feats is None  # the fast kernel never built the dense activations


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_reference_in_bfloat16(device):
    cfg = tiny("batchtopk", k=4, compute_dtype="bfloat16", aux_k=6, dead_tokens_threshold=1, device=device)
    assert_bfloat16_kernels_agree(_btk(cfg))


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_threshold_is_sae_lens_moving_average_of_the_smallest_kept(kernel):
    sae_lens_batchtopk = pytest.importorskip("sae_lens.saes.batchtopk_sae")
    cfg = tiny("batchtopk", k=3, topk_threshold_lr=0.1, kernel=kernel)
    sae = _btk(cfg)
    theirs_cfg = sae_lens_batchtopk.BatchTopKTrainingSAEConfig(d_in=8, d_sae=16, k=3, topk_threshold_lr=0.1)
    theirs = sae_lens_batchtopk.BatchTopKTrainingSAE(theirs_cfg)
    sae.train()
    expected = 0.0
    for _ in range(3):
        out = sae.forward_train(torch.randn(32, 8))
        feats = out.feats.detach()
        smallest = float(feats[feats > 0].min())
        expected = 0.9 * expected + 0.1 * smallest
        theirs.update_topk_threshold(feats)
        assert float(sae.topk_threshold) == pytest.approx(expected, rel=1e-12)
        assert float(sae.topk_threshold) == float(theirs.topk_threshold)
    assert sae.topk_threshold.dtype == torch.float64
    sae.eval()
    sae.forward_train(torch.randn(32, 8))
    assert float(sae.topk_threshold) == pytest.approx(expected, rel=1e-12)  # eval mode leaves it alone


def test_no_positive_activation_leaves_the_threshold():
    sae = _btk(tiny("batchtopk"))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
        sae.topk_threshold.fill_(0.25)
    sae.train()
    assert sae.forward_train(torch.randn(8, 8)).l0 == 0
    assert float(sae.topk_threshold) == 0.25


def test_inference_uses_the_threshold_per_token():
    sae = _btk(tiny("batchtopk", d_in=4, d_sae=4, dtype="float64"), randomise=False)
    set_weights(sae, torch.eye(4), torch.eye(4))
    with torch.no_grad():
        sae.topk_threshold.fill_(0.5)
    x = torch.tensor([[0.6, 0.4, 0.5, -1.0], [2.0, 3.0, 0.51, 0.0]], dtype=torch.float64)
    expected = torch.tensor([[0.6, 0.0, 0.0, 0.0], [2.0, 3.0, 0.51, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(sae.encode(x[:1]), expected[:1])  # a token's code ignores the batch


def test_post_step_normalises_decoder_rows():
    sae = _btk(tiny("batchtopk"))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 3, 16)[:, None])
    sae.post_step()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
