"""saelab.corpus.config: CorpusConfig validates its fields, round-trips through JSON, and keeps
its fingerprint through the round trip."""

from __future__ import annotations

import pytest

from saelab.corpus import CorpusConfig, corpus_fingerprint


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
