"""Fixtures shared by the explorer tests: two small random SAEs on the tiny model and the
ExplorerData built from them. Session-scoped: several files read them, none changes them."""

from __future__ import annotations

import pytest

from saelab import viz
from tests.viz._helpers import LABELS, TEXTS


@pytest.fixture(scope="session")
def saes(tiny_model, make_sae):
    d = tiny_model.cfg.d_model
    return {
        "L2": make_sae(d, 32, "blocks.2.hook_resid_pre", seed=3),
        "L4": make_sae(d, 48, "blocks.4.hook_resid_pre", seed=4),
    }


@pytest.fixture(scope="session")
def data(tiny_model, saes):
    return viz.ExplorerData.build(tiny_model, saes, TEXTS, LABELS, use_cache=False)
