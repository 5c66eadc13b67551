"""DiffMean vectors: mean over a category's per-text mean residuals (BOS left out) minus the
same over the rest, checked by hand on the tiny model; one pass, cached."""

from __future__ import annotations

import importlib

import pytest
import torch

from saelab.extract.hooks import run_hooks
from saelab.extract.tokens import tokenize
from saelab.interventions.diffmean import diffmean_vectors
from tests.interventions._helpers import LABELS, TEXTS

diffmean_module = importlib.import_module("saelab.interventions.diffmean")

HOOKS = ["blocks.2.hook_resid_pre", "blocks.7.hook_resid_post"]


def _text_mean(model, text: str, hook: str, max_tokens: int = diffmean_module.MAX_TOKENS) -> torch.Tensor:
    ids = tokenize(model, [text]).ids[0][:max_tokens]
    acts = run_hooks(model, [hook], torch.tensor([ids]))[hook][0]
    return acts[1:].float().mean(0)  # BOS left out


def test_the_vector_is_the_category_mean_minus_the_rest(tiny_model, tmp_path):
    vectors = diffmean_vectors(tiny_model, HOOKS, TEXTS, LABELS, batch_size=5, root=tmp_path, progress=False)
    assert vectors.hooks == HOOKS
    for hook in HOOKS:
        means = torch.stack([_text_mean(tiny_model, t, hook) for t in TEXTS])
        python = torch.tensor([label == "python" for label in LABELS])
        expected = means[python].mean(0) - means[~python].mean(0)
        torch.testing.assert_close(vectors.vector("python", hook), expected, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(vectors.vector("non_english", hook), -expected, atol=1e-3, rtol=1e-4)


def test_only_the_first_max_tokens_count(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(diffmean_module, "MAX_TOKENS", 4)
    vectors = diffmean_vectors(tiny_model, HOOKS[:1], TEXTS, LABELS, root=tmp_path, progress=False)
    means = torch.stack([_text_mean(tiny_model, t, HOOKS[0], max_tokens=4) for t in TEXTS])
    torch.testing.assert_close(vectors.text_means[HOOKS[0]], means, atol=1e-3, rtol=1e-4)


def test_a_second_call_reads_the_cache(tiny_model, tmp_path, monkeypatch):
    first = diffmean_vectors(tiny_model, HOOKS, TEXTS, LABELS, root=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def no_pass(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(diffmean_module, "_text_means", no_pass)
    again = diffmean_vectors(tiny_model, list(reversed(HOOKS)), TEXTS, LABELS, root=tmp_path, progress=False)
    for hook in HOOKS:
        assert torch.equal(again.text_means[hook], first.text_means[hook])
        assert torch.equal(again.vector("python", hook), first.vector("python", hook))
    # Other texts are another key; refresh recomputes.
    with pytest.raises(AssertionError, match="cache should have answered"):
        diffmean_vectors(tiny_model, HOOKS, TEXTS[:-1], LABELS[:-1], root=tmp_path, progress=False)
    with pytest.raises(AssertionError, match="cache should have answered"):
        diffmean_vectors(tiny_model, HOOKS, TEXTS, LABELS, root=tmp_path, refresh=True, progress=False)


def test_bad_diffmean_requests_are_refused(tiny_model, tmp_path):
    labels = ["python"] + ["non_english"] * (len(TEXTS) - 1)
    vectors = diffmean_vectors(tiny_model, HOOKS[:1], TEXTS, labels, root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="at least 2 texts of 'python'"):
        vectors.vector("python", HOOKS[0])
    with pytest.raises(ValueError, match="at least 2 texts of 'math'"):
        vectors.vector("math", HOOKS[0])
    with pytest.raises(ValueError, match="no DiffMean vectors at 'blocks.9.hook_resid_pre'"):
        vectors.vector("non_english", "blocks.9.hook_resid_pre")
    with pytest.raises(ValueError, match="labels"):
        diffmean_vectors(tiny_model, HOOKS, TEXTS, LABELS[:-1], root=tmp_path)
    with pytest.raises(ValueError, match="at least one hook"):
        diffmean_vectors(tiny_model, [], TEXTS, LABELS, root=tmp_path)
