"""Exact-L0 threshold adjustment: the calibration L0 is hit exactly and the held-out L0 within
2% (JumpReLU, BatchTopK, TopK -> JumpReLU, ReLU both ways), per-feature quantiles scale every
latent's rate alike, the converted SAE round-trips through SAELens, the order statistics are
exact and streamed in bounded chunks, and bad inputs get clear errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from sae_lens import SAE, JumpReLUSAE

from saelab.train import (
    ThresholdResult,
    adjust_thresholds,
    config_for,
    make_sae,
    save_sae,
    thresholds as thresholds_mod,
)
from saelab.train.base import TrainableSAE
from saelab.train.batchtopk import TrainableBatchTopKSAE
from saelab.train.export import to_sae_lens
from saelab.train.jumprelu import TrainableJumpReLUSAE
from saelab.train.order_stats import float_keys, keys_to_floats, select_ranked
from saelab.train.relu import TrainableReLUSAE
from saelab.train.thresholds import to_jumprelu

from ._helpers import DEVICES

D_IN, D_SAE, N_ROWS = 32, 64, 16_000


def _dictionary() -> torch.Tensor:
    D = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(123))
    return D / D.norm(dim=1, keepdim=True)


def planted(n: int, seed: int) -> torch.Tensor:
    """[n, d_in]: 4 of 64 unit-norm atoms per row, weights in [0.5, 2.5], plus a little noise."""
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.rand(n, D_SAE, generator=gen).argsort(1)[:, :4]
    codes = torch.zeros(n, D_SAE).scatter_(1, chosen, 0.5 + 2 * torch.rand(n, 4, generator=gen))
    return codes @ _dictionary() + 0.05 * torch.randn(n, D_IN, generator=gen)


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return planted(N_ROWS, seed=1)


@pytest.fixture(scope="module")
def held() -> torch.Tensor:
    return planted(N_ROWS, seed=2)


def planted_sae(activation: str, device: str = "cpu", **kw: Any) -> TrainableSAE[Any]:
    """An SAE that knows the planted atoms (encoder = decoder^T), with non-trivial thresholds."""
    if activation in ("topk", "batchtopk", "matryoshka_batchtopk"):
        kw.setdefault("k", 4)
    sae = make_sae(config_for(activation, d_in=D_IN, d_sae=D_SAE, device=device, **kw))
    D = _dictionary().to(device)
    with torch.no_grad():
        sae.W_enc.copy_(D.T)
        sae.W_dec.copy_(D)
        sae.b_enc.fill_(-0.1)
        if isinstance(sae, TrainableJumpReLUSAE):
            sae.threshold.copy_(0.3 * torch.rand(D_SAE, generator=torch.Generator().manual_seed(7)).to(device))
        if isinstance(sae, TrainableBatchTopKSAE):
            sae.topk_threshold.fill_(0.4)
    return sae


def l0(sae: TrainableSAE[Any], x: torch.Tensor) -> float:
    with torch.no_grad():
        return (sae.encode(x) != 0).sum().item() / x.shape[0]


def assert_on_target(result: ThresholdResult, n: int = N_ROWS) -> None:
    assert abs(result.calibration_l0 - result.target_l0) <= 1.5 / n  # exact up to rounding target * n
    assert abs(result.relative_error) <= 0.02
    assert result.n_calibration == result.n_held_out == n


@pytest.mark.parametrize(("activation", "target", "cls"), [
    ("jumprelu", 18.0, TrainableJumpReLUSAE),
    ("batchtopk", 12.0, TrainableBatchTopKSAE),
    ("topk", 5.0, TrainableJumpReLUSAE),
])  # fmt: skip
def test_a_near_target_takes_one_global_shift(calib, held, activation, target, cls):
    sae = planted_sae(activation)
    state = {k: v.clone() for k, v in sae.state_dict().items()}
    result = adjust_thresholds(sae, calib, held, target_l0=target)
    assert result.method == "global" and type(result.sae) is cls
    assert_on_target(result)
    assert result.held_out_l0 == pytest.approx(l0(result.sae, held))
    assert result.l0_before == pytest.approx(l0(sae, held))
    assert all(torch.equal(v, sae.state_dict()[k]) for k, v in state.items())  # the input is untouched
    assert result.shift is not None
    if activation == "jumprelu":
        new = result.sae.threshold.detach()
        torch.testing.assert_close(new, (state["threshold"] + result.shift).clamp(min=0))
    if activation == "batchtopk":
        assert float(result.sae.topk_threshold) == pytest.approx(0.4 + result.shift)


@pytest.mark.parametrize("device", DEVICES)
def test_both_paths_hit_the_target_on_each_device(calib, held, device):
    calib, held = calib.to(device), held.to(device)
    near = adjust_thresholds(planted_sae("batchtopk", device), calib, held, target_l0=12.0)
    jumprelu = planted_sae("jumprelu", device)
    far = adjust_thresholds(jumprelu, calib, held, target_l0=l0(jumprelu, calib) / 3)
    assert (near.method, far.method) == ("global", "per_feature")
    for result in (near, far):
        assert_on_target(result)
        assert result.sae.W_enc.device.type == torch.device(device).type


def test_a_batchtopk_subclass_keeps_its_class_on_the_global_path(calib, held):
    matryoshka = pytest.importorskip("saelab.train.matryoshka")
    sae = planted_sae("matryoshka_batchtopk", prefix_sizes=(16,))
    result = adjust_thresholds(sae, calib, held, target_l0=12.0)
    assert type(result.sae) is matryoshka.TrainableMatryoshkaBatchTopKSAE and result.method == "global"
    assert_on_target(result)


@pytest.mark.parametrize("activation", ["jumprelu", "batchtopk", "topk"])
def test_a_far_target_takes_per_feature_quantiles_that_scale_every_rate_alike(calib, held, activation):
    sae = planted_sae(activation)
    if isinstance(sae, TrainableJumpReLUSAE):
        with torch.no_grad():
            sae.threshold[0] = 1e3  # a silent latent
    target = l0(sae, calib) / 3
    result = adjust_thresholds(sae, calib, held, target_l0=target)
    assert result.method == "per_feature" and result.shift is None
    assert isinstance(result.sae, TrainableJumpReLUSAE)
    assert_on_target(result)
    with torch.no_grad():
        before = (sae.encode(calib) != 0).sum(0).double()
        after = (result.sae.encode(calib) != 0).sum(0).double()
    ratio = after.sum() / before.sum()
    assert ((after - ratio * before).abs() <= 1.0).all()  # c_f = round(r * fired_f), exactly
    assert (after[before == 0] == 0).all()
    if activation == "jumprelu":
        assert result.sae.threshold[0] == 1e3  # kept, not lowered to its calibration maximum


def test_far_ratio_decides_and_method_overrides(calib, held):
    sae = planted_sae("jumprelu")
    current = l0(sae, calib)
    assert adjust_thresholds(sae, calib, held, target_l0=current / 1.4).method == "global"
    assert adjust_thresholds(sae, calib, held, target_l0=current / 1.4, far_ratio=1.2).method == "per_feature"
    forced = adjust_thresholds(sae, calib, held, target_l0=current / 3, method="global")
    assert forced.method == "global"
    assert_on_target(forced)
    near = adjust_thresholds(sae, calib, held, target_l0=current * 0.9, method="per_feature")
    assert near.method == "per_feature"
    assert_on_target(near)


def test_topk_converts_to_jumprelu_at_its_own_l0(calib, held):
    topk = planted_sae("topk", k=4)
    result = adjust_thresholds(topk, calib, held, target_l0=None)
    assert result.target_l0 == pytest.approx(l0(topk, calib))
    assert isinstance(result.sae, TrainableJumpReLUSAE)
    assert abs(result.held_out_l0 - result.l0_before) <= 0.02 * result.l0_before  # compared at the same L0
    evs = [result.explained_variance_before, result.explained_variance_after]
    evs += [result.explained_variance_typical_before, result.explained_variance_typical_after]
    assert all(math.isfinite(ev) and ev <= 1 for ev in evs)
    torch.testing.assert_close(result.sae.W_enc, topk.W_enc)
    assert (result.sae.threshold == result.shift).all()  # one threshold from 0, like BatchTopK's


def test_converted_topk_loads_in_sae_lens_as_jumprelu_and_encodes_identically(calib, held, tmp_path):
    topk = planted_sae("topk", k=4, hook_name="blocks.3.hook_resid_pre")
    result = adjust_thresholds(topk, calib, held, target_l0=3.0)
    loaded = SAE.load_from_disk(save_sae(result.sae, tmp_path / "converted"))
    assert type(loaded) is JumpReLUSAE and loaded.cfg.architecture() == "jumprelu"
    assert loaded.cfg.metadata.hook_name == "blocks.3.hook_resid_pre"
    x = held[:500]
    with torch.no_grad():
        ours, original = result.sae.encode(x), topk.encode(x)
        torch.testing.assert_close(loaded.encode(x), ours, rtol=0, atol=0)
        torch.testing.assert_close(result.as_sae_lens().encode(x), ours, rtol=0, atol=0)
        assert (ours > 0).any() and (ours == 0).any()
        both = (ours != 0) & (original != 0)
        torch.testing.assert_close(ours[both], original[both])  # a threshold keeps the values it lets through


def test_the_normalisation_constant_travels_with_the_conversion(calib, held, tmp_path):
    topk = planted_sae("topk", k=4)
    topk.set_input_scale(0.7)
    result = adjust_thresholds(topk, calib / 0.7, held / 0.7, target_l0=3.0)
    assert float(result.sae.input_scale) == pytest.approx(0.7)
    assert_on_target(result)
    loaded = SAE.load_from_disk(save_sae(result.sae, tmp_path / "scaled"))
    with torch.no_grad():  # folding the scale into W_enc rounds differently: close, not identical
        torch.testing.assert_close(loaded.encode(held[:500] / 0.7), result.sae.encode(held[:500] / 0.7))


def test_relu_threshold_mode_converts_and_keeps_the_surviving_values(calib, held):
    relu = planted_sae("relu")
    result = adjust_thresholds(relu, calib, held, target_l0=10.0)
    assert isinstance(result.sae, TrainableJumpReLUSAE)
    assert_on_target(result)
    with torch.no_grad():
        before, after = relu.encode(held), result.sae.encode(held)
    torch.testing.assert_close(after, before * (after != 0))
    with pytest.raises(ValueError, match="positive on average"):
        adjust_thresholds(relu, calib, held, target_l0=result.max_l0 + 1)


def test_relu_bias_mode_moves_b_enc_and_may_raise_l0(calib, held):
    relu = planted_sae("relu")
    target = l0(relu, calib) + 5  # beyond what any threshold reaches
    result = adjust_thresholds(relu, calib, held, target_l0=target, relu_mode="bias")
    assert type(result.sae) is TrainableReLUSAE and result.max_l0 == D_SAE
    assert_on_target(result)
    assert result.shift is not None and result.shift < 0
    torch.testing.assert_close(result.sae.b_enc, relu.b_enc - result.shift)
    far = adjust_thresholds(relu, calib, held, target_l0=4.0, relu_mode="bias")
    assert far.method == "per_feature" and type(far.sae) is TrainableReLUSAE
    assert_on_target(far)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_order_statistics_are_exact(dtype):
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(3000, 5, generator=gen) * torch.tensor([1e-3, 1.0, 1e3, 1.0, 1.0])
    values[::7, 3] = 0.25  # ties
    values[::11, 1] = -0.0
    values[:, 4] = -values[:, 4].abs()  # a column of negatives only
    if dtype == torch.float64:  # differences float32 would round away next to a large offset
        values = 1e6 + values.double() * 1e-4
    counted = torch.rand(3000, 5, generator=gen) > 0.3

    def scored():
        return zip(values.split(257), counted.split(257), strict=True)

    flat = values[counted].sort(descending=True).values
    ranks = torch.tensor([1, 2, 1000, 5000, flat.numel()])
    assert torch.equal(select_ranked(scored, ranks, per_column=False), flat[ranks - 1])
    per_col = [values[counted[:, f], f].sort(descending=True).values for f in range(5)]
    ranks = torch.tensor([1, 700, 1500, int(counted[:, 3].sum()), 2])
    expect = torch.stack([per_col[f][ranks[f] - 1] for f in range(5)])
    assert torch.equal(select_ranked(scored, ranks, per_column=True), expect)


def test_float_keys_order_and_invert_bit_for_bit():
    values = torch.randn(3000, generator=torch.Generator().manual_seed(0))
    sample = torch.cat([values, torch.tensor([0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38])])
    for floats, ints in ((sample, torch.int32), (sample.double() * 1e300, torch.int64)):
        keys = float_keys(floats)
        back = keys_to_floats(keys, floats.element_size() * 8)
        assert torch.equal(back.view(ints), floats.view(ints))  # bit for bit, -0.0 included
        by_key = floats[keys.argsort()]
        assert (by_key[1:] >= by_key[:-1]).all()  # the keys order the floats


def test_rows_are_streamed_in_bounded_chunks_whatever_the_input_form(calib, held, monkeypatch):
    sae = planted_sae("jumprelu")
    seen: list[int] = []
    pre = thresholds_mod._pre
    monkeypatch.setattr(thresholds_mod, "_pre", lambda s, x: seen.append(x.shape[0]) or pre(s, x))
    by_tensor = adjust_thresholds(sae, calib, held, target_l0=6.0, chunk_rows=1000)
    assert max(seen) <= 1000 and sum(seen) == 3 * N_ROWS  # survey + 2 radix passes, never all rows at once
    batches = list(calib.split(3000))
    forms = {
        "list": (batches, list(held.split(3000))),
        "generator": (iter(batches), iter(held.split(3000))),
        "source": (lambda start: iter(batches), lambda start: iter(held.split(3000))),
    }
    for name, (c, h) in forms.items():
        other = adjust_thresholds(sae, c, h, target_l0=6.0, max_rows=N_ROWS)
        assert other.calibration_l0 == pytest.approx(by_tensor.calibration_l0, abs=2 / N_ROWS), name
        torch.testing.assert_close(other.sae.threshold, by_tensor.sae.threshold, msg=name)
    capped = adjust_thresholds(sae, calib, held, target_l0=6.0, max_rows=5000)
    assert capped.n_calibration == capped.n_held_out == 5000


def test_a_store_calibrates_on_its_train_split_and_reports_on_held_out(tiny_model, tmp_path):
    import saelab
    from saelab.store import build_store
    from tests.store._helpers import HOOKS, tiny_cfg

    texts = saelab.load_dataset()["text"].tolist()[::3]
    store = build_store(tiny_model, texts, tiny_cfg(tmp_path), progress=False)
    sae = make_sae(config_for("jumprelu", d_in=store.d_in(HOOKS[0]), d_sae=128, device="cpu", hook_name=HOOKS[0]))
    sae.set_input_scale(8.0 / float(store.load(HOOKS[0], "train", device="cpu").norm(dim=1).mean()))
    result = adjust_thresholds(sae, store, target_l0=10.0)
    assert result.n_calibration == store.n_rows("train") and result.n_held_out == store.n_rows("held_out")
    assert abs(result.calibration_l0 - 10.0) <= 1.5 / result.n_calibration
    assert adjust_thresholds(sae, store, target_l0=10.0, max_rows=100).n_calibration == 100


def test_bad_inputs_get_clear_errors(calib, held):
    sae = planted_sae("jumprelu")
    for bad in (0.0, -3.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite number > 0"):
            adjust_thresholds(sae, calib, held, target_l0=bad)
    with pytest.raises(ValueError, match="out of reach.*positive on average"):
        adjust_thresholds(sae, calib, held, target_l0=D_SAE)
    with pytest.raises(TypeError, match="cannot adjust a JumpReLUSAE"):
        adjust_thresholds(to_sae_lens(sae), calib, held, target_l0=3.0)  # type: ignore[arg-type]
    empty = torch.empty(0, D_IN)
    for c, h, where in ((empty, held, "calibration"), (calib, empty, "held-out"), ([], held, "calibration"),
                        (calib, iter([]), "held-out")):  # fmt: skip
        with pytest.raises(ValueError, match=f"The {where} split is empty"):
            adjust_thresholds(sae, c, h, target_l0=3.0)
    for shape in ((100, D_IN - 1), (10, 10, D_IN)):
        with pytest.raises(ValueError, match=r"must be \[n_tokens, d_in=32\]"):
            adjust_thresholds(sae, torch.randn(shape), held, target_l0=3.0)
    with pytest.raises(ValueError, match="set max_rows"):
        adjust_thresholds(sae, lambda start: iter([calib]), held, target_l0=3.0)
    with pytest.raises(ValueError, match="Pass held_out"):
        adjust_thresholds(sae, calib, target_l0=3.0)
    for kw in (
        dict(method="exact"),
        dict(relu_mode="shift"),
        dict(far_ratio=1.0),
        dict(max_rows=0),
        dict(chunk_rows=-1),
    ):
        with pytest.raises(ValueError, match=next(iter(kw))):
            adjust_thresholds(sae, calib, held, target_l0=3.0, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        to_jumprelu(sae, -0.1)


def test_silent_saes_and_too_few_live_latents(calib, held):
    silent = planted_sae("jumprelu")
    with torch.no_grad():
        silent.threshold.fill_(1e6)
    with pytest.raises(ValueError, match="own calibration L0 0.0"):
        adjust_thresholds(silent, calib, held, target_l0=None)
    few = planted_sae("jumprelu")
    with torch.no_grad():
        few.threshold[4:] = 1e6  # only latents 0-3 fire: per-feature scaling cannot reach 12
    with pytest.raises(ValueError, match="use method='global'"):
        adjust_thresholds(few, calib, held, target_l0=12.0, method="per_feature")
    fallback = adjust_thresholds(few, calib, held, target_l0=12.0)  # far, but only the shift can wake the rest
    assert fallback.method == "global"
    assert_on_target(fallback)
