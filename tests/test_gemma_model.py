"""The second embedded model, Gemma-3-270M: assembled from its chunk packages with a pinned
checksum, converted offline with TransformerLens's Gemma-3 config, identical on a cold and a
warm load, and matching transformers on text longer than the 512-token sliding window."""

from __future__ import annotations

import os

import pytest
import torch

from saelab import models

pytestmark = pytest.mark.slow
NAME = "gemma-3-270m"
SPEC = models.EMBEDDED_MODELS[NAME]
# Long enough to cross the sliding window of the local layers (512 tokens) and short of n_ctx.
LONG = " ".join(f"Paragraph {i}: the river rose after the storm, and the town moved its market uphill." for i in
                range(40))  # fmt: skip


@pytest.fixture(scope="module")
def cold_and_warm(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SAELAB_CACHE", str(tmp_path_factory.mktemp("gemma-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        cold = models.load_model(NAME, device="cpu")
        warm = models.load_model(NAME, device="cpu")
        yield cold, warm
    finally:
        mp.undo()


def test_the_gguf_is_assembled_once_with_the_pinned_checksum(cold_and_warm, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    path = models.gguf_path(SPEC)
    assert path == tmp_path / "gguf" / SPEC.gguf_file and path.stat().st_size > 200e6
    path.write_bytes(b"damaged")  # a damaged file is assembled again, never trusted
    assert models._sha256(models.gguf_path(SPEC)) == SPEC.sha256


def test_cold_and_warm_loads_are_one_model(cold_and_warm):
    cold, warm = cold_and_warm
    assert cold.cfg.model_name == warm.cfg.model_name == NAME
    assert (warm.cfg.n_layers, warm.cfg.d_model, warm.cfg.d_vocab, warm.cfg.n_ctx) == (18, 640, 262144, 2048)
    assert warm.cfg.use_qk_norm and warm.cfg.window_size == 512
    assert warm.cfg.attn_types is not None and warm.cfg.attn_types.count("global") == 3
    tokens = warm.to_tokens("The quick brown fox jumps over the lazy dog.")
    assert tokens[0, 0].item() == warm.tokenizer.bos_token_id
    with torch.inference_mode():
        assert torch.equal(cold(tokens), warm(tokens))


def test_logits_match_transformers_past_the_sliding_window(cold_and_warm):
    _, model = cold_and_warm
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf_model, tokenizer = models.load_hf_reference(SPEC)
    tokens = model.to_tokens(LONG)
    assert 600 < tokens.shape[1] < model.cfg.n_ctx
    assert tokenizer(LONG, return_tensors="pt").input_ids.tolist() == tokens.tolist()
    with torch.inference_mode():
        ours, ref = model(tokens), hf_model(tokens).logits
    # center_unembed shifts each position's logits by a constant; softmax is unchanged.
    ours, ref = ours - ours.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True)
    relative = (ours - ref).abs().max() / ref.abs().max()
    assert relative.item() <= 1e-3
    assert (ours.argmax(-1) == ref.argmax(-1)).float().mean().item() >= 0.99


def test_an_sae_of_the_other_model_is_refused_naming_both(cold_and_warm):
    import saelab
    from saelab.saes import check_compatible

    _, model = cold_and_warm
    sae = saelab.load_sae(saelab.saes.BUNDLED_RELEASE, "blocks.15.hook_resid_pre", device="cpu")
    with pytest.raises(ValueError, match=r"d_in=576 does not match .*gemma-3-270m.*d_model=640.*smollm2-135m"):
        check_compatible(model, sae)


def test_token_strings_work_for_gemma(cold_and_warm):
    # TransformerLens 3.x special-cases tokenizers whose path names gemma, and breaks on them.
    _, model = cold_and_warm
    assert model.to_str_tokens("The committee approved it.") == ["<bos>", "The", " committee", " approved", " it", "."]
