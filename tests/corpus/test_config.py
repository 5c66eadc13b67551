"""saelab.corpus.config: CorpusConfig validates its fields, round-trips through JSON (its
declared packages included), and keeps its fingerprint through the round trip."""

from __future__ import annotations

import pytest

from saelab.corpus.config import CORPUS_PACKAGES, FORTUNE_PACKAGES, CorpusConfig
from saelab.corpus.mix import corpus_fingerprint


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


def test_declared_packages_round_trip_and_must_be_declared_for_a_share():
    cfg = CorpusConfig()
    assert cfg.packages == CORPUS_PACKAGES and cfg.fortune_packages == FORTUNE_PACKAGES
    again = CorpusConfig.from_json(cfg.to_json())
    assert again.packages == CORPUS_PACKAGES and isinstance(again.packages[0], tuple)
    with pytest.raises(ValueError, match=r"\['docstrings', 'package_docs'\] a share but packages is empty"):
        CorpusConfig(packages=())
    with pytest.raises(ValueError, match=r"\['fortunes_intl'\] a share but fortune_packages is empty"):
        CorpusConfig(fractions={"python_stdlib": 1, "fortunes_intl": 1}, fortune_packages=())
    with pytest.raises(ValueError, match="name, version"):
        CorpusConfig(packages=(("numpy",),))
    # A mix that reads no packages needs none declared.
    assert CorpusConfig(fractions={"python_stdlib": 1}, packages=(), fortune_packages=()).packages == ()
