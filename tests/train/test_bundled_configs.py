"""The bundled suites' cfg.json: the training record in its metadata reads back as the
TrainConfig that save_sae writes today, agrees with the SAELens fields beside it, and the
SAEs still load, for each embedded model's suite."""

from __future__ import annotations

import json

import pytest

import saelab
from saelab import profiles
from saelab.saes import BUNDLED_RELEASES, bundled_sae_ids, bundled_suite_dir
from saelab.train.config import TrainConfig
from saelab.train.topk import TopKConfig

SUITES = [(release, hook) for release in BUNDLED_RELEASES for hook in bundled_sae_ids(release)]


@pytest.mark.parametrize("profile", ["offline", "gemma"])
def test_each_offline_profile_has_its_suite_bundled(profile):
    chosen = profiles.get(profile)
    assert set(bundled_sae_ids(chosen.sae_release)) == set(chosen.hooks)
    assert BUNDLED_RELEASES[chosen.sae_release] == chosen.model_name


@pytest.mark.parametrize(("release", "hook"), SUITES, ids=lambda v: v)
def test_each_training_record_round_trips_through_train_config(release, hook):
    cfg = json.loads((bundled_suite_dir(release) / hook / "cfg.json").read_text(encoding="utf-8"))
    record = cfg["metadata"]["saelab_train_config"]
    train = TrainConfig.from_dict(record)
    assert isinstance(train, TopKConfig) and train.to_dict() == record
    assert (train.d_in, train.d_sae, train.k) == (cfg["d_in"], cfg["d_sae"], cfg["k"])
    assert train.hook_name == hook == cfg["metadata"]["hook_name"]
    assert train.model_name == cfg["metadata"]["model_name"] == BUNDLED_RELEASES[release]
    sae = saelab.load_sae(release, hook, device="cpu")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (train.d_in, train.d_sae)
