"""Fixtures shared by the evals tests on the tiny model: a few tokens, a random SAE, and its
evaluation. Session-scoped: the splice and harness tests read the same numbers and none
changes them."""

from __future__ import annotations

import pytest

from saelab import evals
from tests.evals._helpers import HOOK, N_POS, TEXTS


@pytest.fixture(scope="session")
def tokens(tiny_model):
    toks = tiny_model.to_tokens(TEXTS)[:, :N_POS]
    assert (toks[:, 0] == tiny_model.tokenizer.bos_token_id).all()
    assert (toks[:, 1:] != tiny_model.tokenizer.bos_token_id).all()
    return toks


@pytest.fixture(scope="session")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 64, HOOK, seed=2, input_norm=30.0)


@pytest.fixture(scope="session")
def result(tiny_model, sae, tokens):
    return evals.evaluate_sae(tiny_model, sae, [tokens], progress=False)
