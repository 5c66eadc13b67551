"""The offline corpus mix: big enough, balanced, deterministic, and free of junk."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import saelab
from saelab import corpus as corpus_mod
from saelab.corpus import (
    DEFAULT_FRACTIONS,
    CorpusConfig,
    build_mix,
    chunk_text,
    corpus_fingerprint,
    describe_mix,
    fortune_language,
    iter_documents,
    junk_reason,
    labelled_ids_in_corpus,
    sample_model_texts,
)

HAVE_FORTUNES = bool(corpus_mod._fortune_files(corpus_mod.DEFAULT_FORTUNE_ROOTS))


@pytest.fixture(scope="module")
def tokenizer(model):
    return model.tokenizer


@pytest.fixture(scope="module")
def big_mix(tokenizer):
    return build_mix(CorpusConfig(target_tokens=1_000_000), tokenizer)


def test_offline_mix_holds_a_million_tokens_from_every_source(big_mix, tokenizer):
    assert big_mix.exact_counts
    assert big_mix.n_tokens >= 1_000_000
    sources = set(big_mix.provenance()["source"])
    expected = {"python_stdlib", "docstrings", "package_docs", "labelled"}
    if HAVE_FORTUNES:
        expected |= {"fortunes_en", "fortunes_intl"}
    assert expected <= sources
    # The recorded counts are the model's token counts.
    sample = list(zip(big_mix.documents, big_mix.tokens))[:: len(big_mix.documents) // 40]
    recount = corpus_mod.encode(tokenizer, [d.text for d, _ in sample])
    assert [n for _, n in sample] == [len(ids) for ids in recount]


def test_each_source_gets_its_share(big_mix):
    frame = big_mix.provenance()
    assert frame["share"].sum() == pytest.approx(1.0)
    assert frame["tokens"].sum() == big_mix.n_tokens
    weights = {s: DEFAULT_FRACTIONS[s] for s in frame["source"]}
    total = sum(weights.values())
    for source, share in zip(frame["source"], frame["share"]):
        assert share == pytest.approx(weights[source] / total, abs=0.01), source


def test_documents_are_clean_and_bounded(big_mix):
    cfg = CorpusConfig()
    texts = big_mix.texts
    assert all(cfg.min_doc_chars <= len(t) <= cfg.max_doc_chars for t in texts)
    assert all(junk_reason(t, cfg) is None for t in texts[::50])
    assert len(set(texts)) == len(texts)
    assert not any("\x1b[" in t for t in texts)  # terminal colour codes in fortunes-zh
    # Sources are interleaved, so any prefix (what a store takes) is a mix too.
    first = {d.source for d in big_mix.documents[:200]}
    assert len(first) >= 4
    assert big_mix.rejected["duplicate"] > 0 and big_mix.rejected["long_line"] > 0


def test_mix_is_deterministic_given_seed(tokenizer):
    cfg = CorpusConfig(target_tokens=20_000, seed=4)
    a = build_mix(cfg, tokenizer)
    b = build_mix(cfg, tokenizer)
    assert a.documents == b.documents and a.tokens == b.tokens
    assert list(iter_documents(cfg, tokenizer)) == a.texts
    c = build_mix(CorpusConfig(target_tokens=20_000, seed=5), tokenizer)
    assert c.texts != a.texts


def test_describe_mix_reports_sources_that_sum_to_one(tokenizer):
    frame = describe_mix(CorpusConfig(target_tokens=20_000, fractions={"python_stdlib": 1, "labelled": 1}), tokenizer)
    assert list(frame.columns) == ["source", "docs", "tokens", "share"]
    assert list(frame["source"]) == ["python_stdlib", "labelled"]
    assert frame["share"].sum() == pytest.approx(1.0)
    assert (frame["docs"] > 0).all()


def test_a_dry_source_passes_its_budget_on(tokenizer):
    # The labelled share (~10k tokens available) cannot fill half of 60k tokens.
    mix = build_mix(CorpusConfig(target_tokens=60_000, fractions={"labelled": 1, "python_stdlib": 1}), tokenizer)
    frame = mix.provenance().set_index("source")
    assert mix.n_tokens >= 60_000
    assert frame.loc["labelled", "tokens"] < 30_000 < frame.loc["python_stdlib", "tokens"]


def test_labelled_texts_in_the_mix_are_recorded(big_mix):
    chosen = labelled_ids_in_corpus(CorpusConfig())
    frame = saelab.load_dataset()
    assert len(chosen) == len(frame) // 2
    # Half of every category, so evaluation keeps a balanced unseen half.
    per_category = frame[frame["id"].isin(chosen)]["category"].value_counts()
    assert set(per_category) == {len(frame) // 14}
    assert big_mix.labelled_ids and set(big_mix.labelled_ids) <= set(chosen)
    assert labelled_ids_in_corpus(CorpusConfig(fractions={"python_stdlib": 1})) == []


def test_junk_filter_catches_binary_minified_tables_and_licences():
    cfg = CorpusConfig()
    assert junk_reason("short", cfg) == "short"
    assert junk_reason("abc\x00def" * 10, cfg) == "binary"
    assert junk_reason("var a=1;" * 200, cfg) == "long_line"
    assert junk_reason("x" * 300 + " and some words", cfg) == "no_spaces"
    assert junk_reason("\n".join("0.25 1.5e-3 -7.0 12" for _ in range(20)), cfg) == "not_text"
    mit = (
        "Permission is hereby granted, free of charge, to any person obtaining a copy. "
        "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, INCLUDING THE "
        "WARRANTIES OF MERCHANTABILITY."
    )
    assert junk_reason(mit, cfg) == "license"
    assert junk_reason("def add(a, b):\n    return a + b  # plain code is fine", cfg) is None
    filt = corpus_mod._Filter(cfg)
    assert filt("A fortune told twice.  ") == "A fortune told twice."
    assert filt("A  fortune told\ntwice.") is None and filt.rejected["duplicate"] == 1


def test_chunks_respect_the_limit_and_cut_code_at_top_level_blocks():
    code = "\n\n".join(f"def f{i}(x):\n    y = x + {i}\n\n    return y * 2\n" for i in range(30))
    chunks = chunk_text(code, 200, code=True)
    assert all(len(c) <= 200 for c in chunks)
    assert all(c.startswith("def f") for c in chunks)
    assert "".join(chunks).replace("\n", "") == code.replace("\n", "")
    assert chunk_text("word " * 100, 50) == [("word " * 100)[i : i + 50] for i in range(0, 500, 50)]


def test_fortune_files_are_parsed_and_languages_told_apart():
    text = "First fortune.\n%\nSecond one,\n\t-- Someone\n%\n"
    assert corpus_mod._split_fortunes(text) == ["First fortune.\n", "\nSecond one,\n\t-- Someone\n"]
    root = Path("/usr/share/games")
    assert fortune_language(root / "fortunes" / "science") == "en"
    assert fortune_language(root / "fortunes" / "ru" / "2001.03") == "ru"
    assert fortune_language(root / "fortunes" / "zh_CN" / "debian-hints") == "zh"
    assert fortune_language(root / "fortunes-de" / "witze") == "de"
    assert fortune_language(root / "fortunes" / "chinese") == "zh"


def test_config_validates_and_round_trips():
    cfg = CorpusConfig(target_tokens=5000, fractions={"python_stdlib": 2, "fortunes_en": 1}, seed=9)
    assert CorpusConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="python_stdlib"):
        CorpusConfig(fractions={"wikipedia": 1.0})
    with pytest.raises(ValueError, match="offline"):
        CorpusConfig(source="web")
    with pytest.raises(ValueError, match="labelled_fraction"):
        CorpusConfig(labelled_fraction=1.5)
    assert corpus_fingerprint(cfg) == corpus_fingerprint(CorpusConfig.from_json(cfg.to_json()))
    assert corpus_fingerprint(cfg) != corpus_fingerprint(CorpusConfig(target_tokens=5001))


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


def test_model_samples_are_seeded_cached_and_optional(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    prompts = ("Dear Sir,", "lol my cat")
    texts = sample_model_texts(model, prompts, n=3, max_new_tokens=2, seed=1)
    assert len(texts) == 3
    # n is split across the prompts in order: two for the first, one for the second.
    assert [t.startswith(p) for t, p in zip(texts, (prompts[0], prompts[0], prompts[1]))] == [True] * 3
    assert sample_model_texts(model, prompts, n=3, max_new_tokens=2, seed=1, cache=False) == texts

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(model, "generate", no_generation)
    assert sample_model_texts(model, prompts, n=3, max_new_tokens=2, seed=1) == texts
    with pytest.raises(ValueError, match="needs the model"):
        build_mix(CorpusConfig(target_tokens=1000, model_samples=2))
