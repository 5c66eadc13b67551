"""Fixtures shared by the extract tests: random SAEs on the tiny model, one at a deep hook
and several (one model pass for all) at early hooks. Session-scoped: no test changes them."""

from __future__ import annotations

import pytest

from tests.extract._helpers import HOOK, HOOKS


@pytest.fixture(scope="session")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 256, HOOK, seed=1)


@pytest.fixture(scope="session")
def saes(tiny_model, make_sae):
    # A small input_norm makes about half of these random features fire on any token.
    return {hook: make_sae(tiny_model.cfg.d_model, 96, hook, seed=i, input_norm=10.0) for i, hook in enumerate(HOOKS)}
