"""ranked_specialists reads the specialist table compare_layers keeps for the same SAE and
texts (notebook 03's), and ranks exactly as a fresh test does."""

from __future__ import annotations

import pandas as pd
import pytest

import saelab
from saelab import analysis
from saelab.analysis import table_cache
from saelab.interventions.category_steering import ranked_specialists
from tests.interventions._helpers import LABELS, TEXTS

HOOK = "blocks.3.hook_resid_pre"


def test_the_head_of_the_kept_table_is_read_back_not_recomputed(tiny_model, make_sae, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    sae = make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=3, input_norm=10.0)
    fresh = ranked_specialists(tiny_model, sae, TEXTS, LABELS, top=2)  # computes and keeps the default table
    pooled = saelab.cached_per_token(tiny_model, {HOOK: sae}, TEXTS)[HOOK].pool("mean")
    direct = analysis.specialists(pooled, LABELS, top=2, n_bootstrap=0)
    columns = ["category", "feature", "rank", "auroc", "strong_in_minus_out"]
    pd.testing.assert_frame_equal(fresh[columns], direct[columns])  # the same ranking as a fresh test

    def fail(*args, **kwargs):
        raise AssertionError("the permutation tests ran again")

    monkeypatch.setattr(table_cache, "specialists", fail)
    again = ranked_specialists(tiny_model, sae, TEXTS, LABELS, top=1)
    pd.testing.assert_frame_equal(again, fresh[fresh["rank"] <= 1].reset_index(drop=True))
    kept = analysis.compare_layers({HOOK: pooled}, LABELS, n_permutations=None)  # notebook 03's call reads it too
    assert len(kept.specialists) == 2 * 5
    # A subset of categories is not what the table holds: it is tested afresh.
    subset = ranked_specialists(tiny_model, sae, TEXTS, LABELS, top=1, categories=["python"])
    assert subset["category"].tolist() == ["python"]
    with pytest.raises(AssertionError, match="ran again"):
        analysis.compare_layers({HOOK: pooled}, LABELS, n_permutations=1_000)  # other settings
