"""Export to SAELens disk format (load_from_disk encodes identically), atomic writes, and the
training configuration (JSON round trip, validation)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from sae_lens import SAE, JumpReLUSAE, StandardSAE, TopKSAE

from saelab.train import TrainConfig, TrainableSAE, save_sae, to_sae_lens
from saelab.train import export as export_mod

@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # the tests draw inputs from the global RNG; keep them repeatable


CASES = {
    "relu": (dict(activation="relu"), StandardSAE, "standard"),
    "relu_tied": (dict(activation="relu", tied_decoder=True), StandardSAE, "standard"),
    "jumprelu": (dict(activation="jumprelu"), JumpReLUSAE, "jumprelu"),
    "topk": (dict(activation="topk", k=5), TopKSAE, "topk"),
}


def trained_looking(activation: str = "topk", seed: int = 0, **kw) -> TrainableSAE:
    """A tiny SAE with every parameter moved off its initial value."""
    kw.setdefault("k", 4)
    cfg = TrainConfig(d_in=8, d_sae=24, device="cpu", activation=activation, hook_name="blocks.3.hook_resid_pre",
                      model_name="smollm2-135m", context_size=64, dataset="unit-test corpus",
                      total_steps=10, lr_warmup_steps=0, lr_decay_steps=0, **kw)
    sae = TrainableSAE(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
        sae.post_step()  # the invariants training maintains (unit decoder rows, thresholds >= 0)
    return sae


@pytest.mark.parametrize("case", list(CASES))
def test_saved_sae_loads_in_sae_lens_and_encodes_identically(case, tmp_path):
    kwargs, cls, architecture = CASES[case]
    sae = trained_looking(**kwargs)
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


@pytest.mark.parametrize("case", list(CASES))
def test_to_sae_lens_in_memory(case):
    kwargs, cls, _ = CASES[case]
    sae = trained_looking(**kwargs)
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


def test_state_dict_round_trip_resumes_the_same_module():
    sae = trained_looking("jumprelu")
    sae.tokens_since_fired[:3] = 7
    clone = TrainableSAE(sae.cfg)
    clone.load_state_dict(sae.state_dict())
    assert torch.equal(clone.threshold, sae.threshold) and torch.equal(clone.tokens_since_fired, sae.tokens_since_fired)


# ---------------------------------------------------------------------------------------
# Configuration.


def test_config_json_round_trip():
    default = TrainConfig()
    assert TrainConfig.from_json(default.to_json()) == default
    custom = TrainConfig(activation="jumprelu", d_in=16, d_sae=64, adam_betas=(0.8, 0.99), aux_k=3,
                         compute_dtype="bfloat16", kernel="reference", device="cpu", context_size=128, seed=7)
    text = custom.to_json()
    assert json.loads(text)["adam_betas"] == [0.8, 0.99]
    again = TrainConfig.from_json(text)
    assert again == custom and again.adam_betas == (0.8, 0.99)
    assert TrainConfig.from_dict(custom.to_dict()) == custom


def test_config_defaults_and_helpers():
    cfg = TrainConfig()
    assert cfg.activation == "topk" and cfg.d_sae == 8 * cfg.d_in
    assert cfg.resolved_aux_k == cfg.d_in // 2
    assert TrainConfig(d_in=8, d_sae=4, k=2).resolved_aux_k == 4  # never more than d_sae


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(activation="gelu"), r"activation='gelu'; valid options: \['relu', 'jumprelu', 'topk'\]"),
        (dict(k=5000), "k=5000 is larger than d_sae=4608"),
        (dict(activation="topk", tied_decoder=True), "tied_decoder=True is only supported with activation='relu'"),
        (dict(activation="relu", l1_coefficient=-1.0), "l1_coefficient must be >= 0"),
        (dict(l0_coefficient=-0.1), "l0_coefficient must be >= 0"),
        (dict(aux_coefficient=-1.0), "aux_coefficient must be >= 0"),
        (dict(jumprelu_bandwidth=0.0), "jumprelu_bandwidth must be > 0"),
        (dict(d_sae=0), "d_sae must be a positive integer"),
        (dict(aux_k=0), "aux_k must be in"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(adam_betas=(0.9, 1.0)), "adam_betas"),
        (dict(total_steps=100, lr_warmup_steps=0, lr_decay_steps=101), "must each be at most total_steps"),
        (dict(compute_dtype="float16"), r"compute_dtype='float16'; valid options"),
        (dict(kernel="triton"), r"kernel='triton'; valid options: \['fast', 'reference'\]"),
        (dict(device="gpu0"), "device='gpu0' is not a torch device"),
    ],
)
def test_invalid_configs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_unknown_config_field():
    with pytest.raises(ValueError, match=r"Unknown TrainConfig field\(s\) \['hidden_dim'\]"):
        TrainConfig.from_dict({"hidden_dim": 10})


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
