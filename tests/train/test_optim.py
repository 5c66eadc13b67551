"""Adam and the schedule: every architecture learns a planted dictionary, runs repeat
exactly, the schedule has its shape, and clipping bounds the gradient."""

from __future__ import annotations

import pytest
import torch

from saelab.train import make_sae
from saelab.train.optim import lr_lambda, make_optimizer, make_scheduler, train_step

from ._helpers import ARCHITECTURES, LEARNS, sparse_data, tiny, train_steps


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("activation", ARCHITECTURES)
def test_adam_steps_learn_a_sparse_dictionary(activation):
    steps, batch = 200, 128
    x = sparse_data(steps * batch)  # 2 of 16 true features per token, d_in = 8
    cfg = tiny(activation, d_sae=32, lr=1e-2, total_steps=steps, batch_size=batch, lr_warmup_steps=10,
               lr_decay_steps=40, dead_tokens_threshold=2000, **LEARNS[activation])
    sae, outs = train_steps(cfg, x)
    first = outs[0].losses["mse"].item()
    last = sum(o.losses["mse"].item() for o in outs[-10:]) / 10
    assert last < 0.25 * first, (first, last)
    assert outs[-1].explained_variance > 0.9
    assert outs[-1].l0 <= 16  # and sparse: at most half of the 32 latents per token
    # The inference code reconstructs held-out tokens too (BatchTopK: through its threshold).
    held_out = sparse_data(512)  # the same dictionary (seed 0), other tokens
    sae.eval()
    with torch.no_grad():
        residual = (sae(held_out) - held_out).pow(2).sum()
        assert 1 - residual / (held_out - held_out.mean(0)).pow(2).sum() > 0.8
        assert (sae.encode(held_out) > 0).sum(1).float().mean() <= 16


def test_same_seed_same_run():
    x = sparse_data(20 * 32)
    cfg = tiny("topk", total_steps=20, lr_warmup_steps=2, lr_decay_steps=5, dead_tokens_threshold=64)
    a, _ = train_steps(cfg, x)
    b, _ = train_steps(cfg, x)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_lr_schedule_warmup_constant_decay():
    cfg = tiny("topk", total_steps=10, lr_warmup_steps=4, lr_decay_steps=4)
    factors = [lr_lambda(step, cfg) for step in range(11)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    flat = tiny("topk", total_steps=10, lr_warmup_steps=0, lr_decay_steps=0)
    assert [lr_lambda(s, flat) for s in (0, 9, 10)] == [1.0, 1.0, 0.0]


def test_train_step_applies_constraints_and_schedule():
    cfg = tiny("topk", lr=0.1, total_steps=4, lr_warmup_steps=2, lr_decay_steps=0)
    sae = make_sae(cfg)
    opt = make_optimizer(sae)
    sched = make_scheduler(opt, cfg)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    out = train_step(sae, opt, torch.randn(16, 8), sched)
    assert out.loss.requires_grad and sae.W_enc.grad is not None
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(16))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_grad_clipping_bounds_the_update_norm(monkeypatch):
    cfg = tiny("relu", grad_clip_norm=1e-3, lr=1.0, total_steps=10)
    sae = make_sae(cfg)
    seen = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        params = list(params)
        real_clip(params, max_norm)
        seen.append(torch.stack([p.grad.norm() for p in params if p.grad is not None]).norm().item())

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train_step(sae, make_optimizer(sae), torch.randn(32, 8) * 10)
    assert seen and seen[0] <= 1e-3 * 1.0001
