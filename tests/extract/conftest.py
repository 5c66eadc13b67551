"""Fixtures shared by the extract tests: random SAEs on the real model, one at a deep hook
and several (one model pass for all) at early hooks. Session-scoped: no test changes them."""

from __future__ import annotations

import pytest

from tests.extract._helpers import HOOK, HOOKS


@pytest.fixture(scope="session")
def sae(model, make_sae):
    return make_sae(model.cfg.d_model, 256, HOOK, seed=1)


@pytest.fixture(scope="session")
def saes(model, make_sae):
    # Early hooks have small residual norms; a small input_norm keeps these random SAEs active.
    return {hook: make_sae(model.cfg.d_model, 96, hook, seed=i, input_norm=10.0) for i, hook in enumerate(HOOKS)}
