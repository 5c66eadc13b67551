"""Fixtures shared by the store tests: documents from the labelled dataset and one small
store built from them on the tiny model. Session-scoped: building is the slow part, and the
tests only read the store."""

from __future__ import annotations

import pytest

import saelab
from saelab.store import build_store
from tests.store._helpers import tiny_cfg


@pytest.fixture(scope="session")
def docs():
    return saelab.load_dataset()["text"].tolist()[::3]


@pytest.fixture(scope="session")
def store(tiny_model, docs, tmp_path_factory):
    return build_store(tiny_model, docs, tiny_cfg(tmp_path_factory.mktemp("store")), progress=False)
