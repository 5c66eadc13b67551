"""Fixtures shared by the analysis tests: planted-truth synthetic activations with their
specialists table, and a small random SAE on the tiny model.

Both are session-scoped: several files read them, none changes them, and building them
(20,000 permutations; a model pass) is the slow part.
"""

from __future__ import annotations

import numpy as np
import pytest

from saelab import analysis
from tests.analysis._helpers import CONSTANT, D_SAE, HOOK, N_CAT, PER_CAT, PLANTED


@pytest.fixture(scope="session")
def synthetic():
    rng = np.random.default_rng(42)
    names = [f"cat{c}" for c in range(N_CAT)]
    codes = np.repeat(np.arange(N_CAT), PER_CAT)
    n = len(codes)
    x = np.where(rng.random((n, D_SAE)) < 0.1, rng.lognormal(0, 1, (n, D_SAE)), 0.0).astype(np.float32)
    for c, f in PLANTED.items():
        fires = np.where(codes == c, rng.random(n) < 0.9, rng.random(n) < 0.01)
        x[:, f] = np.where(fires, rng.uniform(2, 4, n), 0.0)
    x[:, CONSTANT] = 1.5
    labels = [names[c] for c in codes]
    table = analysis.specialists(x, labels, n_permutations=20_000, n_bootstrap=200, seed=0)
    return x, labels, codes, names, table


@pytest.fixture(scope="session")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 64, HOOK, seed=3)
