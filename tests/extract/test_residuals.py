"""saelab.extract.residuals: a cached extraction keeps the model's activations, and the next
SAE at those hooks (an extraction, or the examples pass's TextSource) reads them instead of
running the model, with the same results; entries are keyed, size-capped and never half-written."""

from __future__ import annotations

import pytest
import torch

import saelab
from saelab.autointerp.sources import TextSource
from saelab.extract import extract, residuals
from saelab.extract.per_token import PerTokenFeatures
from tests.extract._helpers import HOOKS, MULTI_TEXTS


def _no_model(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the model ran although its activations were cached")

    monkeypatch.setattr(extract, "run_hooks", fail)


def _same(a: PerTokenFeatures, b: PerTokenFeatures) -> None:
    assert a.tokens == b.tokens
    for i in range(a.n_texts):
        torch.testing.assert_close(a[i], b[i], rtol=1e-5, atol=1e-4)


def test_a_new_sae_at_cached_hooks_is_encoded_without_the_model(tiny_model, saes, make_sae, tmp_path, monkeypatch):
    saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS, root=tmp_path)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "residuals").iterdir()) == sorted(HOOKS)
    newcomer = {"new": make_sae(tiny_model.cfg.d_model, 64, HOOKS[1], seed=9)}
    fresh = saelab.extract_per_token(tiny_model, newcomer["new"], MULTI_TEXTS)
    _no_model(monkeypatch)
    reused = saelab.cached_per_token(tiny_model, newcomer, MULTI_TEXTS, root=tmp_path)["new"]
    _same(reused, fresh)
    # Other texts have no entry: the model must run for them.
    with pytest.raises(AssertionError, match="the model ran"):
        saelab.cached_per_token(tiny_model, newcomer, MULTI_TEXTS[:3], root=tmp_path)


def test_the_examples_pass_reads_the_cached_activations(tiny_model, saes, monkeypatch, tmp_path):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    hook = HOOKS[0]
    fresh = TextSource(tiny_model, MULTI_TEXTS, hook, batch_size=3)
    assert fresh._cached is None  # noqa: SLF001 (nothing cached yet)
    want = [fresh.chunk(i) for i in range(fresh.n_chunks)]
    saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS)  # the default root, as a notebook calls it
    monkeypatch.setattr("saelab.autointerp.sources.hook_activations", lambda *a, **k: pytest.fail("the model ran"))
    reading = TextSource(tiny_model, MULTI_TEXTS, hook, batch_size=3)
    assert reading.key == fresh.key  # the same content, so the same examples cache
    for i, expected in enumerate(want):
        got = reading.chunk(i)
        assert torch.equal(got.tokens, expected.tokens) and torch.equal(got.valid, expected.valid)
        torch.testing.assert_close(got.acts[got.valid], expected.acts[expected.valid], rtol=1e-5, atol=1e-4)


def test_entries_over_the_size_cap_are_not_kept(tiny_model, saes, tmp_path, monkeypatch):
    monkeypatch.setattr(residuals, "MAX_ENTRY_MB", 0)
    saelab.cached_per_token(tiny_model, saes, MULTI_TEXTS, root=tmp_path)
    assert not (tmp_path / "residuals").exists()


def test_an_interrupted_pass_writes_no_entry(tiny_model, saes, tmp_path):
    _, stream = extract._stream(tiny_model, saes, MULTI_TEXTS, True, 2, "right", 1 << 30, False, tmp_path)  # noqa: SLF001
    next(stream)  # one batch of several, then the caller stops
    stream.close()
    assert not (tmp_path / "residuals").exists()


def test_a_damaged_entry_is_ignored_and_rewritten(tiny_model, saes, make_sae, tmp_path):
    saelab.cached_per_token(tiny_model, {HOOKS[0]: saes[HOOKS[0]]}, MULTI_TEXTS, root=tmp_path)
    (entry,) = (tmp_path / "residuals").iterdir()
    entry.write_bytes(b"not a safetensors file")
    assert residuals.load_residuals(tiny_model, HOOKS[0], MULTI_TEXTS, None, tmp_path) is None
    newcomer = make_sae(tiny_model.cfg.d_model, 64, HOOKS[0], seed=9)
    got = saelab.cached_per_token(tiny_model, {"new": newcomer}, MULTI_TEXTS, root=tmp_path)["new"]
    _same(got, saelab.extract_per_token(tiny_model, newcomer, MULTI_TEXTS))
    assert residuals.load_residuals(tiny_model, HOOKS[0], MULTI_TEXTS, None, tmp_path) is not None
