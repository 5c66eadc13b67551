"""Profiles: offline by default, gpt2 one parameter away (everything checkable offline)."""

import pytest

from saelab import profiles


def test_offline_is_default():
    profile = profiles.get()
    assert profile.name == "offline" and not profile.needs_network
    assert profile.model_name == "smollm2-135m"
    assert profile.sae_release == "saelab-smollm2-135m"
    assert profile.default_hook in profile.hooks
    layers = [int(h.split(".")[1]) for h in profile.hooks]
    assert layers == sorted(layers) and max(layers) < 30


def test_gpt2_profile_matches_seed_setup():
    profile = profiles.get("gpt2")
    assert profile.model_name == "gpt2" and profile.needs_network
    assert profile.sae_release == "gpt2-small-res-jb"
    assert profile.hooks == tuple(f"blocks.{i}.hook_resid_pre" for i in (6, 8, 10, 11))
    assert profile.model_kwargs == {"center_writing_weights": True}
    assert [profile.neuronpedia_id(h) for h in profile.hooks] == [
        f"gpt2-small/{i}-res-jb" for i in (6, 8, 10, 11)
    ]
    assert profile.neuronpedia_url("blocks.6.hook_resid_pre", 10399).endswith("/gpt2-small/6-res-jb/10399")


def test_gemma_profile_reads_the_same_relative_depths_offline():
    gemma, offline = profiles.get("gemma"), profiles.get("offline")
    assert gemma.model_name == "gemma-3-270m" and not gemma.needs_network
    assert gemma.sae_release == "saelab-gemma3-270m"
    depth = lambda p, n: [int(h.split(".")[1]) / n for h in p.hooks]  # noqa: E731
    # 9/12/15/17 of 18 layers against 15/20/25/28 of 30: equal up to one layer of the shallower model.
    assert max(abs(a - b) for a, b in zip(depth(gemma, 18), depth(offline, 30), strict=True)) < 1 / 18
    assert gemma.hooks.index(gemma.default_hook) == offline.hooks.index(offline.default_hook)


def test_unknown_profile_lists_valid():
    with pytest.raises(ValueError, match=r"Valid profiles: \['offline', 'gemma', 'gpt2'\]"):
        profiles.get("gpt3")


def test_hook_outside_profile_is_rejected():
    with pytest.raises(ValueError, match="not in profile"):
        profiles.get().load_sae("blocks.3.hook_resid_pre")
