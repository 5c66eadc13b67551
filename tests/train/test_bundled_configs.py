"""The bundled suite's cfg.json: the training record in its metadata reads back as the
TrainConfig that save_sae writes today, agrees with the SAELens fields beside it, and the
SAEs still load."""

from __future__ import annotations

import json

import pytest

import saelab
from saelab.saes import BUNDLED_RELEASE, bundled_sae_ids, bundled_suite_dir
from saelab.train.config import TrainConfig
from saelab.train.topk import TopKConfig

HOOKS = bundled_sae_ids()


def test_the_suite_is_bundled():
    assert HOOKS == [f"blocks.{layer}.hook_resid_pre" for layer in (15, 20, 25, 28)]


@pytest.mark.parametrize("hook", HOOKS)
def test_each_training_record_round_trips_through_train_config(hook):
    cfg = json.loads((bundled_suite_dir() / hook / "cfg.json").read_text(encoding="utf-8"))
    record = cfg["metadata"]["saelab_train_config"]
    train = TrainConfig.from_dict(record)
    assert isinstance(train, TopKConfig) and train.to_dict() == record
    assert (train.d_in, train.d_sae, train.k) == (cfg["d_in"], cfg["d_sae"], cfg["k"])
    assert train.hook_name == hook == cfg["metadata"]["hook_name"]
    assert train.model_name == cfg["metadata"]["model_name"]
    sae = saelab.load_sae(BUNDLED_RELEASE, hook, device="cpu")
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (train.d_in, train.d_sae)
