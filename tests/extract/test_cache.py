"""saelab.extract.cache: cached per-token features are reused, a changed SAE or text list gets
a fresh extraction, and a damaged entry is recomputed."""

import pytest
import torch

import saelab
from saelab.extract import cache
from tests.extract._helpers import HOOKS, MULTI_TEXTS


def test_cache_reuses_entries_and_notices_changed_saes(tiny_model, saes, tmp_path, monkeypatch):
    first = saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS, root=tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.name != "residuals"]) == len(saes)

    def fail(*args, **kwargs):
        raise AssertionError("the model ran although every entry was cached")

    monkeypatch.setattr(cache, "extract_per_token_multi", fail)
    again = saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS, root=tmp_path)
    for name in saes:
        assert torch.equal(again[name].values, first[name].values)

    # A changed SAE (or text list) gets a new key, hence a fresh extraction.
    changed = {HOOKS[0]: saes[HOOKS[0]]}
    with torch.no_grad():
        changed[HOOKS[0]] = type(saes[HOOKS[0]])(saes[HOOKS[0]].cfg)
        changed[HOOKS[0]].load_state_dict(saes[HOOKS[0]].state_dict())
        changed[HOOKS[0]].b_enc.add_(0.5)
    with pytest.raises(AssertionError, match="the model ran"):
        saelab.cached_per_token(tiny_model, changed, MULTI_TEXTS, root=tmp_path)
    with pytest.raises(AssertionError, match="the model ran"):
        saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS[:2], root=tmp_path)


def test_damaged_cache_entry_is_recomputed(tiny_model, saes, tmp_path):
    one = {HOOKS[0]: saes[HOOKS[0]]}
    saelab.cached_per_token(tiny_model, one, MULTI_TEXTS, root=tmp_path)
    (entry,) = (p for p in tmp_path.iterdir() if p.name != "residuals")
    (entry / "features.safetensors").write_bytes(b"not a safetensors file")
    again = saelab.cached_per_token(tiny_model, one, MULTI_TEXTS, root=tmp_path)
    assert again[HOOKS[0]].n_texts == len(MULTI_TEXTS)
