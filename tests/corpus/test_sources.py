"""saelab.corpus.sources: fortune files parsed and their languages told apart, the online
Hugging Face source failing clearly offline, and model samples seeded, cached and optional."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from saelab.corpus import CorpusConfig, build_mix, iter_documents
from saelab.corpus.sources.fortunes import fortune_language, split_fortunes
from saelab.corpus.sources.model_samples import sample_model_texts


def test_fortune_files_are_parsed_and_languages_told_apart():
    text = "First fortune.\n%\nSecond one,\n\t-- Someone\n%\n"
    assert split_fortunes(text) == ["First fortune.\n", "\nSecond one,\n\t-- Someone\n"]
    root = Path("/usr/share/games")
    assert fortune_language(root / "fortunes" / "science") == "en"
    assert fortune_language(root / "fortunes" / "ru" / "2001.03") == "ru"
    assert fortune_language(root / "fortunes" / "zh_CN" / "debian-hints") == "zh"
    assert fortune_language(root / "fortunes-de" / "witze") == "de"
    assert fortune_language(root / "fortunes" / "chinese") == "zh"


def test_hf_source_fails_clearly_without_datasets_or_network(monkeypatch):
    cfg = CorpusConfig(source="hf")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="source='offline'"):
        next(iter_documents(cfg))

    def no_network(*args, **kwargs):
        raise OSError("could not reach the hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=no_network))
    with pytest.raises(ConnectionError, match="needs the network"):
        next(iter_documents(cfg))


def test_model_samples_are_seeded_cached_and_optional(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    prompts = ("Dear Sir,", "lol my cat")
    texts = sample_model_texts(tiny_model, prompts, n=3, max_new_tokens=2, seed=1)
    assert len(texts) == 3
    # n is split across the prompts in order: two for the first, one for the second.
    assert [t.startswith(p) for t, p in zip(texts, (prompts[0], prompts[0], prompts[1]), strict=True)] == [True] * 3
    assert sample_model_texts(tiny_model, prompts, n=3, max_new_tokens=2, seed=1, cache=False) == texts

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(tiny_model, "generate", no_generation)
    assert sample_model_texts(tiny_model, prompts, n=3, max_new_tokens=2, seed=1) == texts
    with pytest.raises(ValueError, match="needs the model"):
        build_mix(CorpusConfig(target_tokens=1000, model_samples=2))
