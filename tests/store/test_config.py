"""saelab.store.config: StoreConfig validates its fields and round-trips through JSON."""

from __future__ import annotations

import pytest

from saelab.store import StoreConfig
from tests.store._helpers import tiny_cfg


def test_store_config_validates_and_round_trips(tmp_path):
    cfg = tiny_cfg(tmp_path)
    assert StoreConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="float16"):
        StoreConfig(dtype="int8")
    with pytest.raises(ValueError, match="held_out_fraction"):
        StoreConfig(held_out_fraction=1.0)
    with pytest.raises(ValueError, match="duplicates"):
        StoreConfig(hooks=("a", "a"))
