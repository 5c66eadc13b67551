"""ReLU + L1: losses by hand, the norm-weighted penalty, the tied decoder, and the fast
kernel (sparse and dense branches) against the reference, outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from saelab.train import make_sae, relu

from ._helpers import DEVICES, assert_same_step, randomised, run_kernel, set_weights, sparse_data, tiny, train_steps


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_losses_by_hand():
    cfg = tiny("relu", d_in=2, d_sae=3, l1_coefficient=0.5, dtype="float64")
    sae = make_sae(cfg)
    W_enc = [[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]
    W_dec = [[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]]  # row norms 1, 2, sqrt(8)
    set_weights(sae, W_enc, W_dec, b_dec=[1.0, 0.0])
    x = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    out = sae.forward_train(x)
    # x - b_dec = [1, 1] and [0, 3]: pre = [1, 1, 0] and [0, 3, -3]
    torch.testing.assert_close(out.feats, torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]], dtype=torch.float64))
    x_hat = torch.tensor([[1 + 1.0, 2.0], [1.0, 6.0]], dtype=torch.float64)  # feats @ W_dec + b_dec
    torch.testing.assert_close(out.x_hat, x_hat)
    mse = ((0**2 + 1**2) + (0**2 + 3**2)) / 2  # squared error summed over d_in, mean over batch
    l1 = 0.5 * ((1 * 1 + 1 * 2) + (3 * 2)) / 2  # activations weighted by decoder row norms
    assert out.losses["mse"].item() == pytest.approx(mse)
    assert out.losses["l1"].item() == pytest.approx(l1)
    assert out.loss.item() == pytest.approx(mse + l1)
    assert out.l0.item() == pytest.approx(1.5)
    assert out.fire_counts.tolist() == [1, 2, 0]


def test_penalty_cannot_be_cheated_by_rescaling_decoder_rows():
    """Shrinking a latent and growing its decoder row keeps x_hat; the norm-weighted L1 must not drop."""
    sae = randomised(tiny("relu", dtype="float64"))
    x = torch.randn(16, 8, dtype=torch.float64)
    before = sae.forward_train(x)
    with torch.no_grad():
        sae.W_enc[:, :4] /= 10
        sae.b_enc[:4] /= 10
        sae.W_dec[:4] *= 10
    after = sae.forward_train(x)
    torch.testing.assert_close(after.x_hat, before.x_hat)
    torch.testing.assert_close(after.losses["l1"], before.losses["l1"])


def test_post_step_leaves_decoder_rows_free():
    sae = randomised(tiny("relu"))
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    before = sae.W_dec.detach().clone()
    sae.post_step()
    assert torch.equal(sae.W_dec, before)  # norm-weighted L1 needs no projection


def test_tied_decoder_is_the_encoder_transpose():
    sae = randomised(tiny("relu", tied_decoder=True))
    assert "W_dec" not in dict(sae.named_parameters())
    torch.testing.assert_close(sae.W_dec, sae.W_enc.t())
    out = sae.forward_train(torch.randn(8, 8))
    out.loss.backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    torch.testing.assert_close(sae.decode(sae.encode(torch.ones(2, 8))), sae(torch.ones(2, 8)))


# The fast kernel takes its sparse path up to relu.RELU_SPARSE_MAX_DENSITY and the dense
# one above; these thresholds force one branch whatever the batch's density.
BRANCH = {"sparse": 1.0, "dense": -1.0}


def _batch(sae, n: int) -> torch.Tensor:
    """Random tokens, the first three sitting exactly on b_dec: with every b_enc < 0 below,
    their pre-activations are all negative, so those rows have no active latent."""
    x = torch.randn(n, sae.cfg.d_in, dtype=sae.dtype, device=sae.device)
    x[:3] = sae.b_dec.detach()
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("branch", ["sparse", "dense"])
@pytest.mark.parametrize("d_in, d_sae, n", [(8, 16, 32), (24, 96, 80)])
def test_fast_matches_reference(monkeypatch, branch, tied, d_in, d_sae, n, device):
    monkeypatch.setattr(relu, "RELU_SPARSE_MAX_DENSITY", BRANCH[branch])
    cfg = tiny("relu", d_in=d_in, d_sae=d_sae, dtype="float64", l1_coefficient=0.7, tied_decoder=tied, device=device)
    sae = randomised(cfg)
    with torch.no_grad():
        sae.b_enc.copy_(-0.3 - 0.3 * torch.rand(d_sae, dtype=torch.float64))  # some latents on, most off
        if not tied:
            sae.W_dec.mul_(0.5 + torch.rand(d_sae, 1, dtype=torch.float64, device=device))  # unequal L1 weights
    x = _batch(sae, n)
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "l1"})
    assert (fast[0].dense_feats is None) == (branch == "sparse")
    active_per_token = (ref[0].feats > 0).sum(1)
    assert (active_per_token[:3] == 0).all() and active_per_token.max() > 1  # empty rows, and busy ones
    assert 0 < ref[0].l0 < d_sae / 2
    assert set(fast[1]) == ({"W_enc", "b_enc", "b_dec"} | (set() if tied else {"W_dec"}))


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_matches_reference_with_no_active_latent(monkeypatch, branch):
    monkeypatch.setattr(relu, "RELU_SPARSE_MAX_DENSITY", BRANCH[branch])
    sae = randomised(tiny("relu", dtype="float64"))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    x = torch.randn(16, 8, dtype=torch.float64)
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "l1"})
    assert fast[0].l0 == 0 and fast[0].losses["l1"] == 0
    torch.testing.assert_close(fast[0].x_hat, sae.b_dec.detach().expand(16, 8))  # nothing but the bias
    assert (fast[1]["W_enc"] == 0).all() and (fast[1]["W_dec"] == 0).all()


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_gradient_is_zero_at_zero(monkeypatch, branch):
    """ReLU at exactly 0: value 0 and gradient 0 (torch's convention, and the reference's)."""
    monkeypatch.setattr(relu, "RELU_SPARSE_MAX_DENSITY", BRANCH[branch])
    sae = make_sae(tiny("relu", d_in=4, d_sae=4, dtype="float64", l1_coefficient=1.0))
    set_weights(sae, torch.eye(4), torch.eye(4))
    x = torch.tensor([[0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)  # pre = x: latent 0 sits at exactly 0
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "l1"})
    assert fast[0].fire_counts.tolist() == [0, 1, 0, 1]
    # b_enc's gradient is dL/dpre: zero for the latents at or below 0, nonzero for the open ones
    b_enc_grad = fast[1]["b_enc"]
    assert b_enc_grad[0] == 0 and b_enc_grad[2] == 0 and (b_enc_grad[[1, 3]] != 0).all()


def test_fast_picks_its_branch_by_density():
    d_sae = 200
    sae = make_sae(tiny("relu", d_sae=d_sae))
    at_most = int(relu.RELU_SPARSE_MAX_DENSITY * d_sae)  # active latents the sparse branch takes
    for n_on, sparse in ((0, True), (at_most, True), (at_most + 1, False), (d_sae, False)):
        # W_enc = 0 makes pre = b_enc for every token: exactly n_on latents active everywhere
        set_weights(sae, torch.zeros(8, d_sae), sae.W_dec.detach(), b_enc=(torch.arange(d_sae) < n_on) * 1.0 - 0.5)
        out = sae.forward_train(torch.randn(16, 8), kernel="fast")
        assert out.l0 == n_on and (out.dense_feats is None) == sparse, (n_on, at_most)


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_matches_reference_in_bfloat16(monkeypatch, branch):
    monkeypatch.setattr(relu, "RELU_SPARSE_MAX_DENSITY", BRANCH[branch])
    sae = randomised(tiny("relu", compute_dtype="bfloat16", l1_coefficient=0.5))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    x = torch.randn(64, 8)
    fast, fast_grads, _ = run_kernel(sae, x, "fast")
    ref, ref_grads, _ = run_kernel(sae, x, "reference")
    torch.testing.assert_close(fast.feats.float(), ref.feats.float())  # the same bf16 pre-activations
    torch.testing.assert_close(fast.x_hat, ref.x_hat, rtol=2e-2, atol=2e-2)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=5e-2, atol=5e-2 * grad.abs().max().item())


def test_fast_training_run_matches_reference(monkeypatch):
    """Forty Adam steps from the same start: the fast kernel, crossing from its dense branch
    to its sparse one as the L1 penalty bites, ends where the reference does."""
    monkeypatch.setattr(relu, "RELU_SPARSE_MAX_DENSITY", 0.3)
    steps, batch = 40, 64
    x = sparse_data(steps * batch).double()
    base = dict(d_sae=32, dtype="float64", lr=2e-2, l1_coefficient=1.0, total_steps=steps, batch_size=batch)
    runs = {}
    for kernel in ("fast", "reference"):
        sae, outs = train_steps(tiny("relu", kernel=kernel, **base), x)
        runs[kernel] = sae, [o.dense_feats is None for o in outs], [o.l0.item() for o in outs]
    (fast, sparse_steps, fast_l0), (ref, _, ref_l0) = runs["fast"], runs["reference"]
    assert not sparse_steps[0] and sparse_steps[-1]  # began dense, ended sparse
    assert fast_l0 == pytest.approx(ref_l0)
    for (name, a), b in zip(fast.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")
