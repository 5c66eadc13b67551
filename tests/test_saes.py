"""load_sae routes, clear errors for damaged files, Neuronpedia ids from SAELens's yaml, and
model/SAE compatibility checks."""

import shutil
from pathlib import Path

import pytest
import torch

import saelab
from saelab import saes


def test_folder_round_trip_encodes_identically(tmp_path, make_sae):
    sae = make_sae(576, 64, "blocks.20.hook_resid_pre", seed=3)
    sae.save_model(tmp_path / "my_sae")
    loaded = saelab.load_sae(tmp_path / "my_sae", device="cpu")
    x = torch.randn(5, 576) * 200
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))
    assert loaded.cfg.metadata.hook_name == "blocks.20.hook_resid_pre"
    # A suite folder plus an id works too, the way the bundled suite is laid out.
    again = saelab.load_sae(tmp_path, "my_sae", device="cpu")
    torch.testing.assert_close(again.encode(x), sae.encode(x))


def test_folder_without_cfg_explains(tmp_path, make_sae):
    make_sae(576, 8, "blocks.1.hook_resid_pre").save_model(tmp_path / "inner")
    with pytest.raises(FileNotFoundError, match=r"pass one as sae_id: \['inner'\]"):
        saelab.load_sae(tmp_path)


def test_bundled_suite_resolves_to_data(monkeypatch, tmp_path, make_sae):
    monkeypatch.setenv("SAELAB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make saes"):
        saelab.load_sae("saelab-smollm2-135m", "blocks.20.hook_resid_pre")
    make_sae(576, 8, "blocks.20.hook_resid_pre").save_model(
        tmp_path / "saes" / "saelab-smollm2-135m" / "blocks.20.hook_resid_pre"
    )
    sae = saelab.load_sae("saelab-smollm2-135m", "blocks.20.hook_resid_pre", device="cpu")
    assert sae.cfg.d_sae == 8
    with pytest.raises(ValueError, match=r"Valid ids: \['blocks.20.hook_resid_pre'\]"):
        saelab.load_sae("saelab-smollm2-135m", "blocks.99.hook_resid_pre")


def test_unknown_release_and_id():
    with pytest.raises(ValueError, match="Did you mean.*gpt2-small-res-jb"):
        saelab.load_sae("gpt2-small-res-jbb", "blocks.8.hook_resid_pre")
    with pytest.raises(ValueError, match=r"not in release 'gpt2-small-res-jb'. Valid ids: \['blocks.0.hook_resid_pre'"):
        saelab.load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_middle")


def test_release_download_failure_is_explained(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(saes.SAE, "from_pretrained", offline)
    with pytest.raises(OSError, match="offline, use the bundled suite"):
        saelab.load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre", device="cpu")


def test_neuronpedia_ids_come_from_sae_lens_yaml():
    assert saes.neuronpedia_id("gpt2-small-res-jb", "blocks.8.hook_resid_pre") == "gpt2-small/8-res-jb"
    # The pitfall: resid_post at the last layer is filed under layer 12, not 11.
    assert saes.neuronpedia_id("gpt2-small-res-jb", "blocks.11.hook_resid_post") == "gpt2-small/12-res-jb"
    assert saes.neuronpedia_url("gpt2-small/8-res-jb", 10399) == "https://www.neuronpedia.org/gpt2-small/8-res-jb/10399"
    assert saes.neuronpedia_url(None, 3) is None
    assert saes.neuronpedia_id("saelab-smollm2-135m", "blocks.20.hook_resid_pre") is None


def test_model_loading_options_from_release_metadata():
    assert saes.release_model_kwargs("gpt2-small-res-jb") == {"center_writing_weights": True}
    assert saes.release_model_kwargs("not-a-release") == {}


def test_sae_neuronpedia_url_from_metadata(make_sae):
    sae = make_sae(768, 8, "blocks.8.hook_resid_pre", model_name="gpt2-small")
    assert saes.sae_neuronpedia_url(sae, 5) is None
    sae.cfg.metadata.neuronpedia_id = "gpt2-small/8-res-jb"
    assert saes.sae_neuronpedia_url(sae, 5) == "https://www.neuronpedia.org/gpt2-small/8-res-jb/5"


def test_load_model_for_sae_follows_metadata(monkeypatch, make_sae):
    calls = {}
    monkeypatch.setattr(saes, "load_model", lambda name, device, from_pretrained_kwargs: calls.update(
        name=name, kwargs=from_pretrained_kwargs) or "model")
    sae = make_sae(768, 8, "blocks.8.hook_resid_pre", model_name="gpt2-small")
    sae.cfg.metadata.model_from_pretrained_kwargs = {"center_writing_weights": True}
    assert saes.load_model_for_sae(sae) == "model"
    assert calls == {"name": "gpt2-small", "kwargs": {"center_writing_weights": True}}
    sae.cfg.metadata.model_name = None
    with pytest.raises(ValueError, match="no model_name"):
        saes.load_model_for_sae(sae)


def test_sae_for_another_model_is_rejected(tiny_model, make_sae):
    gpt2_sized = make_sae(768, 16, "blocks.6.hook_resid_pre", model_name="gpt2-small")
    with pytest.raises(ValueError, match=rf"d_in=768 does not match .*d_model={tiny_model.cfg.d_model}"):
        saelab.extract_features(tiny_model, gpt2_sized, ["x"])
    too_deep = make_sae(tiny_model.cfg.d_model, 16, "blocks.40.hook_resid_pre")
    with pytest.raises(ValueError, match="only 30 layers"):
        saelab.extract_features(tiny_model, too_deep, ["x"])
    nonsense = make_sae(tiny_model.cfg.d_model, 16, "blocks.3.hook_nonsense")
    with pytest.raises(ValueError, match="no such hook point"):
        saelab.extract_features(tiny_model, nonsense, ["x"])


BUNDLED = saelab.saes.bundled_suite_dir() / "blocks.20.hook_resid_pre"


def damaged_copy(tmp_path: Path, damage) -> Path:
    folder = tmp_path / "sae"
    shutil.copytree(BUNDLED, folder)
    damage(folder)
    return folder


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "damage, file, match",
    [
        (lambda f: truncate(f / "sae_weights.safetensors"), "sae_weights.safetensors", "truncated or damaged"),
        (lambda f: truncate(f / "sae_weights.safetensors", 0.0001), "sae_weights.safetensors", "truncated or damaged"),
        (lambda f: truncate(f / "cfg.json", 0.9), "cfg.json", "not valid JSON"),
        (lambda f: (f / "sae_weights.safetensors").unlink(), "sae", "no sae_weights.safetensors"),
    ],
    ids=["weights cut in half", "weights header cut", "config cut", "weights missing"],
)
def test_damaged_sae_files_get_an_error_that_names_them(tmp_path, damage, file, match):
    folder = damaged_copy(tmp_path, damage)
    with pytest.raises(saes.CorruptSAEError, match=match) as err:
        saelab.load_sae(folder, device="cpu")
    assert str(folder / file) in str(err.value) or str(folder) in str(err.value)
    assert "again" in str(err.value)  # says what to do


def test_damaged_bundled_sae_says_how_to_restore_it(tmp_path, monkeypatch):
    suite = tmp_path / "saes" / "saelab-smollm2-135m"
    damaged_copy(suite, lambda f: truncate(f / "sae_weights.safetensors")).rename(suite / "blocks.20.hook_resid_pre")
    monkeypatch.setenv("SAELAB_DATA", str(tmp_path))
    with pytest.raises(saes.CorruptSAEError, match="git checkout -- data/saes"):
        saelab.load_sae("saelab-smollm2-135m", "blocks.20.hook_resid_pre", device="cpu")
