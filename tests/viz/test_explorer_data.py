"""saelab.viz.explorer_data: the explorers' data built from one model pass on the tiny model
equals extract_features, reads the feature cache, and rejects inconsistent parts."""

from __future__ import annotations

import pytest
import torch

from saelab import viz
from saelab.extract import cache
from saelab.viz.explorer_data import SAEActivations
from tests.viz._helpers import LABELS, TEXTS


def test_explorer_data_matches_extract_features(tiny_model, saes, data):
    import saelab

    assert data.names == ["L2", "L4"]
    assert data.categories == ["python", "math", "non_english", "social", "formal", "conversational"]
    entry = data.saes["L4"]  # the deeper hook: the shared model pass must reach it
    pooled = saelab.extract_features(tiny_model, saes["L4"], TEXTS)
    torch.testing.assert_close(entry.pooled, pooled, atol=1e-5, rtol=1e-5)
    alone = saelab.extract_per_token(tiny_model, saes["L4"], TEXTS)
    assert entry.per_token.tokens == alone.tokens
    torch.testing.assert_close(entry.per_token.values, alone.values)
    assert entry.pooled.abs().max() > 0.1  # not comparing zeros
    assert data.saes["L2"].pooled.shape == (len(TEXTS), 32)


def test_explorer_data_build_reads_the_feature_cache(tiny_model, saes, data, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    first = viz.ExplorerData.build(tiny_model, saes, TEXTS, LABELS)
    assert len([p for p in (tmp_path / "features").iterdir() if p.name != "residuals"]) == len(saes)

    def fail(*args, **kwargs):
        raise AssertionError("the model ran although the features were cached")

    monkeypatch.setattr(cache, "extract_per_token_multi", fail)
    again = viz.ExplorerData.build(tiny_model, saes, TEXTS, LABELS)
    for name in saes:
        torch.testing.assert_close(again.saes[name].pooled, first.saes[name].pooled)
        torch.testing.assert_close(again.saes[name].pooled, data.saes[name].pooled)


def test_explorer_data_rejects_inconsistent_parts(tiny_model, saes, data):
    with pytest.raises(ValueError, match="one entry per text"):
        viz.ExplorerData.build(tiny_model, saes, TEXTS, LABELS[:-1], use_cache=False)
    entry = data.saes["L2"]
    short = SAEActivations(sae=entry.sae, pooled=entry.pooled[:3], per_token=entry.per_token)
    with pytest.raises(ValueError, match="pooled has shape \\(3, 32\\)"):
        viz.ExplorerData(texts=TEXTS, labels=LABELS, saes={"L2": short})
