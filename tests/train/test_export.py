"""Export to SAELens disk format: load_from_disk encodes identically for every architecture
(BatchTopK as a JumpReLU SAE), folded scales, fp16 storage, atomic writes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sae_lens import SAE, JumpReLUSAE, StandardSAE, TopKSAE
from safetensors import safe_open

from saelab.train import TrainConfig, config_for, export as export_mod, make_sae, save_sae
from saelab.train.base import TrainableSAE
from saelab.train.batchtopk import TrainableBatchTopKSAE
from saelab.train.export import to_sae_lens


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the tests draw inputs from the global RNG; keep them repeatable


CASES = {
    "relu": (("relu", {}), StandardSAE, "standard"),
    "relu_tied": (("relu", dict(tied_decoder=True)), StandardSAE, "standard"),
    "jumprelu": (("jumprelu", {}), JumpReLUSAE, "jumprelu"),
    "topk": (("topk", dict(k=5)), TopKSAE, "topk"),
    "batchtopk": (("batchtopk", dict(k=5)), JumpReLUSAE, "jumprelu"),
}


def trained_looking(activation: str = "topk", seed: int = 0, **kw: Any) -> TrainableSAE[Any]:
    """A tiny SAE with every parameter (and BatchTopK's threshold) moved off its initial value."""
    if activation in ("topk", "batchtopk"):
        kw.setdefault("k", 4)
    cfg = config_for(activation, d_in=8, d_sae=24, device="cpu", hook_name="blocks.3.hook_resid_pre",
                     model_name="smollm2-135m", context_size=64, dataset="unit-test corpus",
                     total_steps=10, lr_warmup_steps=0, lr_decay_steps=0, **kw)
    sae = make_sae(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        if isinstance(sae, TrainableBatchTopKSAE):
            sae.topk_threshold.fill_(0.3)
        sae.post_step()  # the invariants training maintains (unit decoder rows, thresholds >= 0)
    return sae


@pytest.mark.parametrize("case", list(CASES))
def test_saved_sae_loads_in_sae_lens_and_encodes_identically(case, tmp_path):
    (activation, kwargs), cls, architecture = CASES[case]
    sae = trained_looking(activation, **kwargs)
    path = save_sae(sae, tmp_path / case)
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]

    loaded = SAE.load_from_disk(path)
    assert type(loaded) is cls and loaded.cfg.architecture() == architecture
    assert loaded.cfg.apply_b_dec_to_input is True
    x = 3 * torch.randn(2, 7, 8)
    with torch.no_grad():
        ours, theirs = sae.encode(x), loaded.encode(x)
        torch.testing.assert_close(theirs, ours, rtol=0, atol=0)
        assert (ours > 0).any() and (ours == 0).any()  # a non-trivial comparison
        torch.testing.assert_close(loaded.decode(theirs), sae.decode(ours))
    torch.testing.assert_close(loaded.W_dec, sae.W_dec.detach())  # tied decoders are materialised
    if case == "topk":
        assert loaded.cfg.k == 5 and loaded.cfg.rescale_acts_by_decoder_norm is False
    meta = loaded.cfg.metadata
    assert meta.hook_name == "blocks.3.hook_resid_pre" and meta.model_name == "smollm2-135m"
    assert meta.prepend_bos is True and meta.context_size == 64 and meta.dataset_path == "unit-test corpus"
    assert meta.saelab_version and TrainConfig.from_dict(meta.saelab_train_config) == sae.cfg


def test_batchtopk_exports_its_threshold_on_every_latent(tmp_path):
    sae = trained_looking("batchtopk")
    loaded = SAE.load_from_disk(save_sae(sae, tmp_path / "btk", input_scale=0.5))
    torch.testing.assert_close(loaded.threshold, torch.full((24,), 0.3))  # pre-activation units: not rescaled
    x = 3 * torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(0.5 * x), rtol=0, atol=0)
        pre = (0.5 * x - sae.b_dec) @ sae.W_enc + sae.b_enc
        assert ((pre > 0) & (pre <= 0.3)).any()  # activations the threshold, not the ReLU, removes


@pytest.mark.parametrize("case", list(CASES))
def test_to_sae_lens_in_memory(case):
    (activation, kwargs), cls, _ = CASES[case]
    sae = trained_looking(activation, **kwargs)
    converted = to_sae_lens(sae)
    assert type(converted) is cls
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(converted.encode(x), sae.encode(x), rtol=0, atol=0)
        torch.testing.assert_close(converted(x), sae(x))


def test_float16_storage_loads_as_float32(tmp_path):
    sae = trained_looking("jumprelu")
    path = save_sae(sae, tmp_path / "fp16", dtype="float16", extra_metadata={"training_tokens": 123})
    with safe_open(str(path / "sae_weights.safetensors"), framework="pt") as f:
        assert {f.get_tensor(name).dtype for name in f.keys()} == {torch.float16}
        assert set(f.keys()) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    loaded = SAE.load_from_disk(path)
    assert loaded.W_enc.dtype == torch.float32
    assert loaded.cfg.metadata.training_tokens == 123
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            getattr(sae, name).copy_(getattr(sae, name).half().float())  # what fp16 storage keeps
        x = torch.randn(6, 8)
        torch.testing.assert_close(loaded.encode(x), sae.encode(x))


def test_input_scale_is_folded(tmp_path):
    """An SAE trained on s * x, exported with input_scale=s, reads raw x."""
    sae = trained_looking("topk", k=4)
    scale = 0.25
    loaded = SAE.load_from_disk(save_sae(sae, tmp_path / "scaled", input_scale=scale))
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(scale * x))
        torch.testing.assert_close(loaded(x), sae(scale * x) / scale)


def test_the_saes_own_normalisation_is_folded(tmp_path):
    """A scale the SAE holds (TrainConfig.normalize_activations) is folded on export, times
    any external one: the exported SAE reads raw activations like the trained SAE does."""
    sae = trained_looking("relu")
    sae.set_input_scale(0.2)
    x = 30 * torch.randn(5, 8)
    loaded = SAE.load_from_disk(save_sae(sae, tmp_path / "own"))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(x))
        torch.testing.assert_close(loaded(x), sae(x))
        assert sae.encode(x).abs().sum() > 0
        # encode of raw x equals the normalised computation on 0.2 * x
        pre = (0.2 * x - sae.b_dec) @ sae.W_enc + sae.b_enc
        torch.testing.assert_close(sae.encode(x), pre.relu())
    both = SAE.load_from_disk(save_sae(sae, tmp_path / "both", input_scale=0.5))
    with torch.no_grad():
        torch.testing.assert_close(both.encode(x), sae.encode(0.5 * x))


def test_save_replaces_atomically_and_cleans_up(tmp_path, monkeypatch):
    first, second = trained_looking("topk", seed=0, k=3), trained_looking("topk", seed=1, k=3)
    path = tmp_path / "sae"
    save_sae(first, path)
    save_sae(second, path)
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]  # no temporary or old folders left
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(SAE.load_from_disk(path).encode(x), second.encode(x))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_sae(first, path)
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]  # the failed write left nothing behind
    with torch.no_grad():
        torch.testing.assert_close(SAE.load_from_disk(path).encode(x), second.encode(x))


def test_save_refuses_to_replace_a_file(tmp_path):
    target = tmp_path / "not_a_folder"
    target.write_text("precious")
    with pytest.raises(FileExistsError):
        save_sae(trained_looking(), target)
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["not_a_folder"]
