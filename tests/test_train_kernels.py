"""SAE training kernels: hand-checked loss parts, straight-through gradients, AuxK and dead
latents, fast vs reference kernels (outputs and gradients), learning, reproducibility."""

from __future__ import annotations

import copy

import pytest
import torch

from saelab.train import TrainConfig, TrainableSAE, geometric_median, lr_lambda, make_optimizer, train_step
from saelab.train import kernels
from saelab.train.optim import make_scheduler


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the tests draw inputs from the global RNG; keep them repeatable


def tiny(activation: str = "topk", **kw) -> TrainConfig:
    base = dict(activation=activation, d_in=8, d_sae=16, k=3, device="cpu", batch_size=32, total_steps=100,
                lr_warmup_steps=0, lr_decay_steps=0)
    base.update(kw)
    return TrainConfig(**base)


def randomised(cfg: TrainConfig, seed: int = 1) -> TrainableSAE:
    """An SAE with non-trivial biases (so tests do not pass just because b_dec = b_enc = 0)."""
    sae = TrainableSAE(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(cfg.d_sae, generator=gen))
        sae.b_dec.copy_(0.1 * torch.randn(cfg.d_in, generator=gen))
        if cfg.activation == "jumprelu":
            sae.threshold.copy_(0.3 * torch.rand(cfg.d_sae, generator=gen))
    return sae


def set_weights(sae: TrainableSAE, W_enc, W_dec=None, b_enc=None, b_dec=None) -> None:
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(W_enc, dtype=sae.dtype))
        if W_dec is not None:
            sae.W_dec.copy_(torch.as_tensor(W_dec, dtype=sae.dtype))
        sae.b_enc.copy_(torch.as_tensor(b_enc, dtype=sae.dtype) if b_enc is not None else 0.0)
        sae.b_dec.copy_(torch.as_tensor(b_dec, dtype=sae.dtype) if b_dec is not None else 0.0)


def sparse_data(n: int, *, d_in: int = 8, n_true: int = 16, active: int = 2, seed: int = 0) -> torch.Tensor:
    """x = sparse non-negative codes @ a random unit-norm dictionary."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_true, d_in, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, n_true, generator=gen).argsort(1)[:, :active]
    codes = torch.zeros(n, n_true).scatter_(1, chosen, 0.5 + 2 * torch.rand(n, active, generator=gen))
    return codes @ dictionary


# ---------------------------------------------------------------------------------------
# Forward passes and loss parts, by hand.


def test_topk_keeps_exactly_the_k_largest():
    cfg = tiny("topk", k=3)
    sae = randomised(cfg)
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


def test_topk_drops_negative_winners():
    sae = randomised(tiny("topk", k=3))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    assert (sae.encode(torch.randn(5, 8)) == 0).all()


def test_relu_losses_by_hand():
    cfg = tiny("relu", d_in=2, d_sae=3, l1_coefficient=0.5, dtype="float64")
    sae = TrainableSAE(cfg)
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


def test_relu_penalty_cannot_be_cheated_by_rescaling_decoder_rows():
    """Shrinking a latent and growing its decoder row keeps x_hat; the norm-weighted L1 must not drop."""
    cfg = tiny("relu", dtype="float64")
    sae = randomised(cfg)
    x = torch.randn(16, 8, dtype=torch.float64)
    before = sae.forward_train(x)
    with torch.no_grad():
        sae.W_enc[:, :4] /= 10
        sae.b_enc[:4] /= 10
        sae.W_dec[:4] *= 10
    after = sae.forward_train(x)
    torch.testing.assert_close(after.x_hat, before.x_hat)
    torch.testing.assert_close(after.losses["l1"], before.losses["l1"])


def test_tied_decoder_is_the_encoder_transpose():
    sae = randomised(tiny("relu", tied_decoder=True))
    assert "W_dec" not in dict(sae.named_parameters())
    torch.testing.assert_close(sae.W_dec, sae.W_enc.t())
    out = sae.forward_train(torch.randn(8, 8))
    out.loss.backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    torch.testing.assert_close(sae.decode(sae.encode(torch.ones(2, 8))), sae(torch.ones(2, 8)))


def test_jumprelu_forward_by_hand():
    cfg = tiny("jumprelu", d_in=4, d_sae=4, dtype="float64", l0_coefficient=2.0)
    sae = TrainableSAE(cfg)
    set_weights(sae, torch.eye(4), torch.eye(4))
    with torch.no_grad():
        sae.threshold.copy_(torch.tensor([0.5, 0.5, 1.0, 0.0]))
    x = torch.tensor([[0.6, 0.4, 1.0, -1.0]], dtype=torch.float64)
    out = sae.forward_train(x)
    # kept only where pre > threshold (strictly): 0.6 > 0.5; 0.4 < 0.5; 1.0 == 1.0; -1 < 0
    torch.testing.assert_close(out.feats, torch.tensor([[0.6, 0.0, 0.0, 0.0]], dtype=torch.float64))
    assert out.losses["l0"].item() == pytest.approx(2.0 * 1)
    torch.testing.assert_close(sae.encode(x), out.feats)


def test_jumprelu_threshold_gradient_only_within_bandwidth():
    bw = 0.2
    cfg = tiny("jumprelu", d_in=4, d_sae=4, dtype="float64", l0_coefficient=1.0, jumprelu_bandwidth=bw)
    sae = TrainableSAE(cfg)
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


def test_post_step_constraints():
    for activation in ("topk", "jumprelu"):
        sae = randomised(tiny(activation))
        with torch.no_grad():
            sae.W_dec.mul_(torch.linspace(0.1, 3, 16)[:, None])
            if activation == "jumprelu":
                sae.threshold[:3] = -1.0
        sae.post_step()
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
        if activation == "jumprelu":
            assert (sae.threshold >= 0).all() and (sae.threshold[:3] == 0).all()
    relu = randomised(tiny("relu"))
    with torch.no_grad():
        relu.W_dec.mul_(3.0)
    before = relu.W_dec.detach().clone()
    relu.post_step()
    assert torch.equal(relu.W_dec, before)  # norm-weighted L1 needs no projection


# ---------------------------------------------------------------------------------------
# Dead latents and AuxK.


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
    rows_with_grad = sae.W_dec.grad.abs().sum(1) > 0
    assert rows_with_grad.any() and not (rows_with_grad & ~dead).any()  # only dead latents' decoders learn


def test_auxk_scale_and_by_hand():
    """aux = coef * min(n_dead/aux_k, 1) * mean ||e_hat - (x - x_hat)||^2, e_hat from the top dead latents."""
    cfg = tiny("topk", d_in=3, d_sae=3, k=1, aux_k=2, dtype="float64", aux_coefficient=0.5, dead_tokens_threshold=1)
    sae = TrainableSAE(cfg)
    set_weights(sae, torch.eye(3), torch.eye(3))
    sae.eval()
    sae.tokens_since_fired[2] = 1  # one dead latent out of aux_k = 2: scale 1/2
    x = torch.tensor([[3.0, 1.0, -2.0]], dtype=torch.float64)
    out = sae.forward_train(x)
    # top-1 keeps latent 0; residual = [0, 1, -2]; the dead latent 2 (no ReLU) gives e_hat = [0, 0, -2]
    assert out.losses["mse"].item() == pytest.approx(1 + 4)
    assert out.losses["aux"].item() == pytest.approx(0.5 * 0.5 * 1.0)


# ---------------------------------------------------------------------------------------
# Fast kernel vs reference kernel.


def _run(sae: TrainableSAE, x: torch.Tensor, kernel: str):
    sae = copy.deepcopy(sae)
    x = x.clone().requires_grad_(True)
    out = sae.forward_train(x, kernel=kernel)
    (out.loss + 0.1 * out.x_hat.sum()).backward()  # an arbitrary upstream gradient on x_hat too
    grads = {name: p.grad for name, p in sae.named_parameters()}
    return out, grads, x.grad


@pytest.mark.parametrize("n_dead", [0, 5, 16])
def test_fast_topk_matches_reference(n_dead):
    cfg = tiny("topk", k=4, aux_k=6, dtype="float64", aux_coefficient=0.3, dead_tokens_threshold=1)
    sae = randomised(cfg)
    sae.eval()
    sae.tokens_since_fired[:n_dead] = 1
    x = torch.randn(32, 8, dtype=torch.float64)
    fast, fast_grads, fast_xgrad = _run(sae, x, "fast")
    ref, ref_grads, ref_xgrad = _run(sae, x, "reference")
    torch.testing.assert_close(fast.x_hat, ref.x_hat)
    torch.testing.assert_close(fast.feats, ref.feats)
    for name in ("mse", "aux"):
        torch.testing.assert_close(fast.losses[name], ref.losses[name])
    assert (fast.losses["aux"] > 0) == (n_dead > 0)
    assert torch.equal(fast.fire_counts, ref.fire_counts)
    assert set(fast_grads) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(fast_xgrad, ref_xgrad)


def test_fast_topk_matches_reference_in_bfloat16():
    cfg = tiny("topk", k=4, compute_dtype="bfloat16", aux_k=6, dead_tokens_threshold=1)
    sae = randomised(cfg)
    sae.eval()
    sae.tokens_since_fired[:5] = 1
    x = torch.randn(64, 8)
    fast, fast_grads, _ = _run(sae, x, "fast")
    ref, ref_grads, _ = _run(sae, x, "reference")
    torch.testing.assert_close(fast.feats, ref.feats)  # same bf16 pre-activations, same choice
    torch.testing.assert_close(fast.x_hat, ref.x_hat, rtol=2e-2, atol=2e-2)
    for name, grad in ref_grads.items():  # the fast backward is exact fp32; the reference's is bf16
        torch.testing.assert_close(fast_grads[name], grad, rtol=5e-2, atol=5e-2 * grad.abs().max().item())


# The ReLU fast kernel takes its sparse path up to kernels.RELU_SPARSE_MAX_DENSITY and the
# dense one above; these thresholds force one branch whatever the batch's density.
_RELU_BRANCH = {"sparse": 1.0, "dense": -1.0}


def _relu_batch(cfg: TrainConfig, sae: TrainableSAE, n: int) -> torch.Tensor:
    """Random tokens, the first three sitting exactly on b_dec: with every b_enc < 0 below,
    their pre-activations are all negative, so those rows have no active latent."""
    x = torch.randn(n, cfg.d_in, dtype=sae.dtype)
    x[:3] = sae.b_dec.detach()
    return x


def _assert_same_relu_step(fast, ref) -> None:
    (fast, fast_grads, fast_xgrad), (ref, ref_grads, ref_xgrad) = fast, ref
    torch.testing.assert_close(fast.x_hat, ref.x_hat)
    torch.testing.assert_close(fast.feats, ref.feats)
    assert set(fast.losses) == set(ref.losses) == {"mse", "l1"}
    for name in ("mse", "l1"):
        torch.testing.assert_close(fast.losses[name], ref.losses[name])
    torch.testing.assert_close(fast.loss, ref.loss)
    torch.testing.assert_close(fast.l0, ref.l0)
    torch.testing.assert_close(fast.explained_variance, ref.explained_variance)
    assert torch.equal(fast.fire_counts, ref.fire_counts)
    assert set(fast_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(fast_xgrad, ref_xgrad)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("branch", ["sparse", "dense"])
@pytest.mark.parametrize("d_in, d_sae, n", [(8, 16, 32), (24, 96, 80)])
def test_fast_relu_matches_reference(monkeypatch, branch, tied, d_in, d_sae, n):
    monkeypatch.setattr(kernels, "RELU_SPARSE_MAX_DENSITY", _RELU_BRANCH[branch])
    cfg = tiny("relu", d_in=d_in, d_sae=d_sae, dtype="float64", l1_coefficient=0.7, tied_decoder=tied)
    sae = randomised(cfg)
    with torch.no_grad():
        sae.b_enc.copy_(-0.3 - 0.3 * torch.rand(d_sae, dtype=torch.float64))  # some latents on, most off
        if not tied:
            sae.W_dec.mul_(0.5 + torch.rand(d_sae, 1, dtype=torch.float64))  # unequal norms for the L1 weights
    x = _relu_batch(cfg, sae, n)
    fast, ref = _run(sae, x, "fast"), _run(sae, x, "reference")
    _assert_same_relu_step(fast, ref)
    assert (fast[0].dense_feats is None) == (branch == "sparse")
    active_per_token = (ref[0].feats > 0).sum(1)
    assert (active_per_token[:3] == 0).all() and active_per_token.max() > 1  # empty rows, and busy ones
    assert 0 < ref[0].l0 < d_sae / 2
    assert set(fast[1]) == ({"W_enc", "b_enc", "b_dec"} | (set() if tied else {"W_dec"}))


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_relu_matches_reference_with_no_active_latent(monkeypatch, branch):
    monkeypatch.setattr(kernels, "RELU_SPARSE_MAX_DENSITY", _RELU_BRANCH[branch])
    sae = randomised(tiny("relu", dtype="float64"))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
    x = torch.randn(16, 8, dtype=torch.float64)
    fast, ref = _run(sae, x, "fast"), _run(sae, x, "reference")
    _assert_same_relu_step(fast, ref)
    assert fast[0].l0 == 0 and fast[0].losses["l1"] == 0
    torch.testing.assert_close(fast[0].x_hat, sae.b_dec.detach().expand(16, 8))  # nothing but the bias
    assert (fast[1]["W_enc"] == 0).all() and (fast[1]["W_dec"] == 0).all()


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_relu_gradient_is_zero_at_zero(monkeypatch, branch):
    """ReLU at exactly 0: value 0 and gradient 0 (torch's convention, and the reference's)."""
    monkeypatch.setattr(kernels, "RELU_SPARSE_MAX_DENSITY", _RELU_BRANCH[branch])
    cfg = tiny("relu", d_in=4, d_sae=4, dtype="float64", l1_coefficient=1.0)
    sae = TrainableSAE(cfg)
    set_weights(sae, torch.eye(4), torch.eye(4))
    x = torch.tensor([[0.0, 1.0, -1.0, 2.0]], dtype=torch.float64)  # pre = x: latent 0 sits at exactly 0
    fast, ref = _run(sae, x, "fast"), _run(sae, x, "reference")
    _assert_same_relu_step(fast, ref)
    assert fast[0].fire_counts.tolist() == [0, 1, 0, 1]
    # b_enc's gradient is dL/dpre: zero for the latents at or below 0, nonzero for the open ones
    b_enc_grad = fast[1]["b_enc"]
    assert b_enc_grad[0] == 0 and b_enc_grad[2] == 0 and (b_enc_grad[[1, 3]] != 0).all()


def test_fast_relu_picks_its_branch_by_density():
    d_sae = 200
    sae = TrainableSAE(tiny("relu", d_sae=d_sae))
    at_most = int(kernels.RELU_SPARSE_MAX_DENSITY * d_sae)  # active latents the sparse branch takes
    for n_on, sparse in ((0, True), (at_most, True), (at_most + 1, False), (d_sae, False)):
        # W_enc = 0 makes pre = b_enc for every token: exactly n_on latents active everywhere
        set_weights(sae, torch.zeros(8, d_sae), sae.W_dec.detach(), b_enc=(torch.arange(d_sae) < n_on) * 1.0 - 0.5)
        out = sae.forward_train(torch.randn(16, 8), kernel="fast")
        assert out.l0 == n_on and (out.dense_feats is None) == sparse, (n_on, at_most)


@pytest.mark.parametrize("branch", ["sparse", "dense"])
def test_fast_relu_matches_reference_in_bfloat16(monkeypatch, branch):
    monkeypatch.setattr(kernels, "RELU_SPARSE_MAX_DENSITY", _RELU_BRANCH[branch])
    sae = randomised(tiny("relu", compute_dtype="bfloat16", l1_coefficient=0.5))
    with torch.no_grad():
        sae.b_enc.fill_(-0.5)
    x = torch.randn(64, 8)
    fast, fast_grads, _ = _run(sae, x, "fast")
    ref, ref_grads, _ = _run(sae, x, "reference")
    torch.testing.assert_close(fast.feats.float(), ref.feats.float())  # the same bf16 pre-activations
    torch.testing.assert_close(fast.x_hat, ref.x_hat, rtol=2e-2, atol=2e-2)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=5e-2, atol=5e-2 * grad.abs().max().item())


def test_fast_relu_training_run_matches_reference(monkeypatch):
    """Forty Adam steps from the same start: the fast kernel, crossing from its dense branch
    to its sparse one as the L1 penalty bites, ends where the reference does."""
    monkeypatch.setattr(kernels, "RELU_SPARSE_MAX_DENSITY", 0.3)
    steps, batch = 40, 64
    x = sparse_data(steps * batch).double()
    cfg = tiny("relu", d_sae=32, dtype="float64", lr=2e-2, l1_coefficient=1.0, total_steps=steps, batch_size=batch)
    runs = {}
    for kernel in ("fast", "reference"):
        sae, outs = _train(TrainConfig(**{**cfg.to_dict(), "kernel": kernel}), x)
        runs[kernel] = sae, [o.dense_feats is None for o in outs], [o.l0.item() for o in outs]
    (fast, sparse_steps, fast_l0), (ref, _, ref_l0) = runs["fast"], runs["reference"]
    assert not sparse_steps[0] and sparse_steps[-1]  # began dense, ended sparse
    assert fast_l0 == pytest.approx(ref_l0)
    for (name, a), b in zip(fast.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_decode_encode_matches_training_forward(activation):
    sae = randomised(tiny(activation))
    x = torch.randn(10, 8)
    out = sae.forward_train(x)
    torch.testing.assert_close(sae.decode(sae.encode(x)), out.x_hat)
    torch.testing.assert_close(sae.encode(x), out.feats)
    # any leading shape is accepted by encode/decode
    assert sae.encode(x.reshape(2, 5, 8)).shape == (2, 5, 16)


# ---------------------------------------------------------------------------------------
# Learning, schedule, reproducibility.

_LEARN = {
    "relu": dict(l1_coefficient=0.05),
    "jumprelu": dict(l0_coefficient=0.05, jumprelu_init_threshold=0.1, jumprelu_bandwidth=0.1),
    "topk": dict(k=2),
}


def _train(cfg: TrainConfig, x: torch.Tensor):
    sae = TrainableSAE(cfg)
    sae.init_b_dec(x[:512])
    opt = make_optimizer(sae)
    sched = make_scheduler(opt, cfg)
    outs = [train_step(sae, opt, batch, sched) for batch in x.split(cfg.batch_size)]
    return sae, outs


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_adam_steps_learn_a_sparse_dictionary(activation):
    steps, batch = 200, 128
    x = sparse_data(steps * batch)  # 2 of 16 true features per token, d_in = 8
    cfg = tiny(activation, d_sae=32, lr=1e-2, total_steps=steps, batch_size=batch, lr_warmup_steps=10,
               lr_decay_steps=40, dead_tokens_threshold=2000, **_LEARN[activation])
    _, outs = _train(cfg, x)
    first = outs[0].losses["mse"].item()
    last = sum(o.losses["mse"].item() for o in outs[-10:]) / 10
    assert last < 0.25 * first, (first, last)
    assert outs[-1].explained_variance > 0.9
    assert outs[-1].l0 <= 16  # and sparse: at most half of the 32 latents per token


def test_same_seed_same_run_different_seed_different_init():
    x = sparse_data(20 * 32)
    cfg = tiny("topk", total_steps=20, lr_warmup_steps=2, lr_decay_steps=5, dead_tokens_threshold=64)
    a, _ = _train(cfg, x)
    b, _ = _train(cfg, x)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    c = TrainableSAE(TrainConfig(**{**cfg.to_dict(), "seed": 1}))
    assert not torch.equal(TrainableSAE(cfg).W_enc, c.W_enc)


def test_initialisation():
    sae = TrainableSAE(tiny("topk", d_in=8, d_sae=32))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.t())
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()
    jump = TrainableSAE(tiny("jumprelu", jumprelu_init_threshold=0.25))
    assert (jump.threshold == 0.25).all()


def test_init_b_dec_geometric_median_resists_outliers():
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [1000.0]]) * torch.tensor([[1.0, 2.0]])
    # on a line the geometric median is the ordinary median, here (2, 4)
    torch.testing.assert_close(geometric_median(points).float(), torch.tensor([2.0, 4.0]), atol=1e-3, rtol=0)
    sae = TrainableSAE(tiny("topk", d_in=2, d_sae=4))
    sae.init_b_dec(points, method="mean")
    torch.testing.assert_close(sae.b_dec, points.mean(0))
    sae.init_b_dec(points)
    torch.testing.assert_close(sae.b_dec, torch.tensor([2.0, 4.0]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="geometric_median"):
        sae.init_b_dec(points, method="median")


def test_lr_schedule_warmup_constant_decay():
    cfg = tiny("topk", total_steps=10, lr_warmup_steps=4, lr_decay_steps=4)
    factors = [lr_lambda(step, cfg) for step in range(11)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    flat = tiny("topk", total_steps=10, lr_warmup_steps=0, lr_decay_steps=0)
    assert [lr_lambda(s, flat) for s in (0, 9, 10)] == [1.0, 1.0, 0.0]


def test_train_step_applies_constraints_and_schedule():
    cfg = tiny("topk", lr=0.1, total_steps=4, lr_warmup_steps=2, lr_decay_steps=0)
    sae = TrainableSAE(cfg)
    opt = make_optimizer(sae)
    sched = make_scheduler(opt, cfg)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    out = train_step(sae, opt, torch.randn(16, 8), sched)
    assert out.loss.requires_grad and sae.W_enc.grad is not None
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_forward_train_rejects_bad_input():
    sae = TrainableSAE(tiny("topk"))
    with pytest.raises(ValueError, match="d_in=8"):
        sae.forward_train(torch.randn(4, 7))
    with pytest.raises(ValueError, match=r"\[batch, d_in\]"):
        sae.forward_train(torch.randn(2, 4, 8))


def test_grad_clipping_bounds_the_update_norm():
    import torch

    from saelab.train import TrainConfig, TrainableSAE, make_optimizer, train_step

    cfg = TrainConfig(activation="relu", d_in=8, d_sae=16, device="cpu", grad_clip_norm=1e-3, lr=1.0,
                      lr_warmup_steps=0, lr_decay_steps=0, total_steps=10)
    sae = TrainableSAE(cfg)
    seen = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        params = list(params)
        real_clip(params, max_norm)
        seen.append(torch.sqrt(sum((p.grad ** 2).sum() for p in params if p.grad is not None)).item())

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        train_step(sae, make_optimizer(sae), torch.randn(32, 8) * 10)
    finally:
        torch.nn.utils.clip_grad_norm_ = real_clip
    assert seen and seen[0] <= 1e-3 * 1.0001
    with pytest.raises(ValueError, match="grad_clip_norm"):
        TrainConfig(grad_clip_norm=0.0)
