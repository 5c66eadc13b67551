"""saelab.corpus.mix: the offline mix is big enough, balanced across its sources, interleaved,
deterministic given its seed, clean, and records which labelled texts it used."""

from __future__ import annotations

import pytest

import saelab
from saelab.corpus import CorpusConfig, build_mix, describe_mix, iter_documents, labelled_ids_in_corpus
from saelab.corpus.config import DEFAULT_FRACTIONS
from saelab.corpus.filters import junk_reason
from saelab.extract.tokens import encode_texts


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def big_mix(tokenizer):
    return build_mix(CorpusConfig(target_tokens=1_000_000), tokenizer)


def test_offline_mix_holds_a_million_tokens_from_every_source(big_mix, tokenizer):
    assert big_mix.exact_counts
    assert big_mix.n_tokens >= 1_000_000
    # Every declared source is there (model samples are not asked for by default).
    assert list(big_mix.provenance()["source"]) == [s for s in DEFAULT_FRACTIONS if s != "model_samples"]
    # The recorded counts are the model's token counts.
    sample = list(zip(big_mix.documents, big_mix.tokens, strict=True))[:: len(big_mix.documents) // 40]
    recount = encode_texts(tokenizer, [d.text for d, _ in sample])
    assert [n for _, n in sample] == [len(ids) for ids in recount]


def test_each_source_gets_its_share(big_mix):
    frame = big_mix.provenance().set_index("source")
    assert frame["share"].sum() == pytest.approx(1.0)
    assert frame["tokens"].sum() == big_mix.n_tokens
    # A source that ran dry (short of its budget) holds what it has; the others share the
    # rest in proportion to their nominal shares.
    dry = [s for s, budget in big_mix.budgets.items() if frame.loc[s, "tokens"] < 0.99 * budget]
    assert set(dry) <= {"package_docs", "labelled"}  # the declared packages ship few docs
    rest = 1.0 - frame.loc[dry, "share"].sum()
    weights = {s: DEFAULT_FRACTIONS[s] for s in frame.index if s not in dry}
    for source, weight in weights.items():
        assert frame.loc[source, "share"] == pytest.approx(rest * weight / sum(weights.values()), abs=0.01), source


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
