"""Matryoshka BatchTopK + AuxK: the loss is the sum of the nested prefixes' reconstruction
losses over one BatchTopK selection, both kernels equal a plain-torch recomputation and
SAELens's, the prefix sizes validate and round-trip, and export is BatchTopK's."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
from sae_lens import SAE, JumpReLUSAE
from torch import Tensor

from saelab.train import MatryoshkaBatchTopKConfig, TrainConfig, config_for, make_sae, save_sae
from saelab.train.base import TrainableSAE
from saelab.train.calibrate import CalibrationConfig, calibrate_sparsity
from saelab.train.export import to_sae_lens
from saelab.train.matryoshka import TrainableMatryoshkaBatchTopKSAE

from ._helpers import (
    DEVICES,
    assert_bfloat16_kernels_agree,
    assert_same_step,
    narrow,
    randomised,
    run_kernel,
    sparse_data,
    tiny,
    train_steps,
)

PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _mat(cfg: TrainConfig, *, randomise: bool = True) -> TrainableMatryoshkaBatchTopKSAE:
    return narrow(randomised(cfg) if randomise else make_sae(cfg), TrainableMatryoshkaBatchTopKSAE)


def _dense_reference(sae: TrainableMatryoshkaBatchTopKSAE, x: Tensor) -> tuple[Tensor, dict[int, Tensor], Tensor]:
    """The step written out in plain torch from its definition: (loss, each prefix's MSE, AuxK)."""
    cfg = sae.cfg
    W_enc, b_enc, W_dec, b_dec = (getattr(sae, name) for name in PARAMS)
    pre = (x - b_dec) @ W_enc + b_enc
    kept = torch.zeros(pre.numel(), dtype=torch.bool)
    kept[pre.flatten().topk(cfg.k * x.shape[0]).indices] = True
    feats = torch.where(kept.view(pre.shape), pre.relu(), 0.0)
    prefix = {m: ((feats[:, :m] @ W_dec[:m] + b_dec - x) ** 2).sum(-1).mean() for m in sae.prefix_sizes}
    dead = sae.dead_mask()
    n_dead, aux_k = int(dead.sum()), cfg.resolved_aux_k
    aux = torch.zeros((), dtype=x.dtype)
    if n_dead:
        values, idx = pre.masked_fill(~dead, float("-inf")).topk(min(aux_k, n_dead), dim=-1)
        e_hat = torch.zeros_like(pre).scatter(1, idx, values) @ W_dec
        residual = (x - (feats @ W_dec + b_dec)).detach()
        aux = cfg.aux_coefficient * min(n_dead / aux_k, 1.0) * ((e_hat - residual) ** 2).sum(-1).mean()
    return sum(prefix.values(), aux), prefix, aux


def _grads(sae: TrainableMatryoshkaBatchTopKSAE, x: Tensor, loss_of) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    sae.zero_grad()
    x = x.clone().requires_grad_(True)
    loss = loss_of(x)
    loss.backward()
    assert x.grad is not None
    return loss.detach(), {name: getattr(sae, name).grad.clone() for name in PARAMS}, x.grad


@pytest.mark.parametrize("kernel", ["fast", "reference"])
@pytest.mark.parametrize("n_dead", [0, 6])
def test_loss_is_the_sum_of_the_prefix_losses_of_a_dense_reference(kernel, n_dead):
    cfg = tiny(
        "matryoshka_batchtopk",
        prefix_sizes=(4, 8),
        dtype="float64",
        aux_k=5,
        aux_coefficient=0.3,
        dead_tokens_threshold=1,
    )
    sae = _mat(cfg)
    sae.eval()
    if n_dead:
        sae.tokens_since_fired[-n_dead:] = 1  # the last latents are dead
    x = torch.randn(24, 8, dtype=torch.float64)
    x[0] *= 4  # a loud token takes more than its share of the batch's k x 24
    out = sae.forward_train(x, kernel=kernel)
    loss, prefix, aux = _dense_reference(sae, x)
    assert set(out.losses) == {"mse", "mse_4", "mse_8", "aux"}
    torch.testing.assert_close(out.losses["mse"], prefix[16])
    torch.testing.assert_close(out.losses["mse_4"], prefix[4])
    torch.testing.assert_close(out.losses["mse_8"], prefix[8])
    torch.testing.assert_close(out.losses["aux"], aux)
    torch.testing.assert_close(out.loss, loss)
    assert prefix[4] > prefix[8] > prefix[16]  # fewer latents, worse reconstruction
    assert (aux > 0) == (n_dead > 0)
    ours = _grads(sae, x, lambda x: sae.forward_train(x, kernel=kernel).loss)
    theirs = _grads(sae, x, lambda x: _dense_reference(sae, x)[0])
    torch.testing.assert_close(ours[0], theirs[0])
    for name in PARAMS:
        torch.testing.assert_close(ours[1][name], theirs[1][name], msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(ours[2], theirs[2])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_dead", [0, 5, 16])
@pytest.mark.parametrize("k", [4, 2])  # k=2: fewer candidates than latents, so two-stage selection
def test_fast_matches_reference(n_dead, device, k):
    cfg = tiny(
        "matryoshka_batchtopk",
        k=k,
        prefix_sizes=(2, 4, 8, 16),
        aux_k=6,
        dtype="float64",
        aux_coefficient=0.3,
        dead_tokens_threshold=1,
        device=device,
    )
    sae = _mat(cfg)
    sae.eval()
    sae.tokens_since_fired[:n_dead] = 1
    x = torch.randn(32, 8, dtype=torch.float64)
    x[:2] *= 4  # tokens with many kept latents ...
    x[-3:] = sae.b_dec.detach().to(x.device)  # ... beside tokens with none
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "mse_2", "mse_4", "mse_8", "aux"})
    assert (fast[0].losses["aux"] > 0) == (n_dead > 0)
    assert set(fast[1]) == set(PARAMS)
    assert fast[0].dense_feats is None  # the fast kernel never built the dense activations


def test_fast_matches_reference_with_an_empty_level():
    """A level where no token kept a latent decodes to nothing, in both kernels."""
    sae = _mat(tiny("matryoshka_batchtopk", prefix_sizes=(4, 8), dtype="float64"))
    with torch.no_grad():
        sae.b_enc[4:8] = -100.0  # latents 4..7 never win
    sae.eval()
    x = torch.randn(16, 8, dtype=torch.float64)
    fast, ref = run_kernel(sae, x, "fast"), run_kernel(sae, x, "reference")
    assert_same_step(fast, ref, {"mse", "mse_4", "mse_8", "aux"})
    assert not (ref[0].feats[:, 4:8] > 0).any()
    torch.testing.assert_close(fast[0].losses["mse_4"], fast[0].losses["mse_8"])


@pytest.mark.parametrize("device", DEVICES)
def test_fast_matches_reference_in_bfloat16(device):
    cfg = tiny(
        "matryoshka_batchtopk",
        k=4,
        prefix_sizes=(4, 8),
        compute_dtype="bfloat16",
        aux_k=6,
        dead_tokens_threshold=1,
        device=device,
    )
    assert_bfloat16_kernels_agree(_mat(cfg))


@pytest.mark.parametrize("kernel", ["fast", "reference"])
def test_losses_match_sae_lens_matryoshka_batchtopk(kernel):
    """SAELens's MatryoshkaBatchTopKTrainingSAE, given the same weights, computes the same
    losses (its outer level is its plain ``mse_loss``), AuxK on dead latents included."""
    mod = pytest.importorskip("sae_lens.saes.matryoshka_batchtopk_sae")
    sae = _mat(
        tiny("matryoshka_batchtopk", prefix_sizes=(4, 8), dtype="float64", aux_coefficient=0.3, dead_tokens_threshold=1)
    )
    sae.eval()
    sae.tokens_since_fired[10:] = 1
    theirs_cfg = mod.MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=8,
        d_sae=16,
        k=3,
        matryoshka_widths=[4, 8, 16],
        rescale_acts_by_decoder_norm=False,
        aux_loss_coefficient=0.3,
        dtype="float64",
    )
    theirs = mod.MatryoshkaBatchTopKTrainingSAE(theirs_cfg)
    theirs.load_state_dict({name: getattr(sae, name).detach() for name in PARAMS}, strict=False)
    x = torch.randn(24, 8, dtype=torch.float64)
    step = mod.TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=sae.dead_mask(), n_training_steps=0, is_logging_step=False
    )
    expected = theirs.training_forward_pass(step)
    out = sae.forward_train(x, kernel=kernel)
    names = {
        "mse": "mse_loss",
        "mse_4": "inner_mse_loss_4",
        "mse_8": "inner_mse_loss_8",
        "aux": "auxiliary_reconstruction_loss",
    }
    for ours, their_name in names.items():
        torch.testing.assert_close(out.losses[ours], expected.losses[their_name].detach(), msg=ours)
    torch.testing.assert_close(out.loss, expected.loss.detach())
    assert out.losses["aux"] > 0


def test_one_level_is_batchtopk():
    """prefix_sizes=(d_sae,) is plain BatchTopK: the same step, loss and gradients."""
    x = torch.randn(32, 8)
    mat = _mat(tiny("matryoshka_batchtopk", prefix_sizes=(16,), aux_k=4, dead_tokens_threshold=1))
    btk = randomised(tiny("batchtopk", aux_k=4, dead_tokens_threshold=1))
    for sae in (mat, btk):
        sae.eval()
        sae.tokens_since_fired[:4] = 1
    for kernel in ("fast", "reference"):
        assert_same_step(run_kernel(mat, x, kernel), run_kernel(btk, x, kernel), {"mse", "aux"})


def test_prefix_sizes_resolve_with_d_sae_last():
    def resolved(**kw: Any) -> tuple[int, ...]:
        return narrow(make_sae(tiny("matryoshka_batchtopk", **kw)), TrainableMatryoshkaBatchTopKSAE).prefix_sizes

    assert resolved(prefix_sizes=(4, 8)) == (4, 8, 16)  # d_sae appended ...
    assert resolved(prefix_sizes=(4, 8, 16)) == (4, 8, 16)  # ... or listed
    assert resolved() == (1, 2, 4, 8, 16)  # the default ladder, d_sae/16 ... d_sae/2
    assert resolved(d_sae=20) == (1, 2, 5, 10, 20)
    assert resolved(d_sae=4) == (1, 2, 4)  # sizes that round to 0 are dropped
    assert config_for("matryoshka_batchtopk").resolved_prefix_sizes == (288, 576, 1152, 2304, 4608)
    assert "prefix_sizes=(4, 8, 16)" in repr(make_sae(tiny("matryoshka_batchtopk", prefix_sizes=(4, 8))))


def test_config_round_trips_through_json():
    cfg = tiny("matryoshka_batchtopk", prefix_sizes=(2, 6), topk_threshold_lr=0.05)
    text = cfg.to_json()
    assert json.loads(text)["prefix_sizes"] == [2, 6] and json.loads(text)["activation"] == "matryoshka_batchtopk"
    again = TrainConfig.from_json(text)
    assert type(again) is MatryoshkaBatchTopKConfig and again == cfg and again.prefix_sizes == (2, 6)
    assert MatryoshkaBatchTopKConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("prefix_sizes", "message"),
    [
        ((0, 8), r"prefix_sizes must all be positive, got \(0, 8\)"),
        ((-4,), "prefix_sizes must all be positive"),
        ((8, 4), r"prefix_sizes must be strictly increasing, got \(8, 4\)"),
        ((4, 4, 8), "prefix_sizes must be strictly increasing"),
        ((4, 32), r"prefix_sizes must be at most d_sae=16, got \(4, 32\)"),
        ((4.0, 8), "prefix_sizes must be a tuple of integers"),
        ((True,), "prefix_sizes must be a tuple of integers"),
        (8, "prefix_sizes must be a tuple of integers, got 8"),
    ],
)
def test_invalid_prefix_sizes_name_the_problem(prefix_sizes, message):
    with pytest.raises(ValueError, match=message):
        tiny("matryoshka_batchtopk", prefix_sizes=prefix_sizes)


def test_every_problem_in_one_error():
    with pytest.raises(ValueError) as info:
        tiny("matryoshka_batchtopk", prefix_sizes=(0, 0, 40), topk_threshold_lr=0.0)
    for part in ("all be positive", "strictly increasing", "at most d_sae=16", "topk_threshold_lr"):
        assert part in str(info.value)


def test_saved_sae_loads_in_sae_lens_as_jumprelu_and_encodes_identically(tmp_path):
    sae = _mat(tiny("matryoshka_batchtopk", prefix_sizes=(4, 8), hook_name="blocks.3.hook_resid_pre"))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        sae.topk_threshold.fill_(0.3)
        sae.post_step()
    loaded = SAE.load_from_disk(save_sae(sae, tmp_path / "mat", input_scale=0.5))
    assert type(loaded) is JumpReLUSAE and loaded.cfg.architecture() == "jumprelu"
    torch.testing.assert_close(loaded.threshold, torch.full((16,), 0.3))
    x = 3 * torch.randn(2, 7, 8)
    with torch.no_grad():
        ours, theirs = sae.encode(0.5 * x), loaded.encode(x)
        torch.testing.assert_close(theirs, ours, rtol=0, atol=0)
        assert (ours > 0).any() and (ours == 0).any()
        torch.testing.assert_close(loaded.decode(theirs), sae.decode(ours) / 0.5)
        torch.testing.assert_close(to_sae_lens(sae).encode(x), sae.encode(x), rtol=0, atol=0)
    record = TrainConfig.from_dict(loaded.cfg.metadata.saelab_train_config)
    assert record == sae.cfg and isinstance(record, MatryoshkaBatchTopKConfig) and record.prefix_sizes == (4, 8)


def test_calibration_sets_k_to_the_target():
    cfg = tiny("matryoshka_batchtopk", prefix_sizes=(4, 8))
    result = calibrate_sparsity(cfg, lambda start: iter(()), CalibrationConfig(target_l0=5.4))
    assert result.cfg == dataclasses.replace(cfg, k=5) and result.converged


def _prefix_ev(sae: TrainableSAE[Any], x: Tensor, m: int) -> float:
    """Explained variance of the reconstruction from latents [0, m) alone (plus b_dec)."""
    with torch.no_grad():
        feats = sae.encode(x)
        feats[:, m:] = 0
        residual = (sae.decode(feats) - x).pow(2).sum()
        return float(1 - residual / (x - x.mean(0)).pow(2).sum())


def test_training_orders_the_latents_by_level():
    """On planted sparse data (16 true features) each prefix alone explains more as it
    grows, and the first prefix explains much more than the same latents of a BatchTopK SAE
    trained alike (0.30 against 0.10 when written; the full dictionaries: 0.89 and 0.91)."""
    steps, batch = 150, 128
    data = sparse_data(steps * batch + 512)
    x, held_out = data[:-512], data[-512:]  # the same dictionary, tokens not trained on
    common: dict[str, Any] = dict(
        d_sae=16,
        k=2,
        lr=1e-2,
        total_steps=steps,
        batch_size=batch,
        lr_warmup_steps=10,
        lr_decay_steps=40,
        dead_tokens_threshold=2000,
    )
    sae, outs = train_steps(tiny("matryoshka_batchtopk", prefix_sizes=(2, 4, 8), **common), x)
    plain, _ = train_steps(tiny("batchtopk", **common), x)
    mat = narrow(sae, TrainableMatryoshkaBatchTopKSAE)
    mat.eval()
    plain.eval()
    assert float(mat.topk_threshold) > 0  # encode goes through the learnt inference threshold
    evs = [_prefix_ev(mat, held_out, m) for m in mat.prefix_sizes]
    assert all(a < b for a, b in zip(evs, evs[1:], strict=False)), evs
    assert evs[-1] > 0.8, evs
    plain_first = _prefix_ev(plain, held_out, 2)
    assert evs[0] > plain_first + 0.1, (evs, plain_first)
    last = outs[-1].losses
    assert last["mse_2"] > last["mse_4"] > last["mse_8"] > last["mse"]
