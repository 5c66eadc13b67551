"""The runner on hand-made examples with known answers: records with their controls, a
derangement for the shuffled control, resuming after a crash, skipped features, and an
unreachable LLM endpoint that fails before anything is written."""

from __future__ import annotations

import json
import re
import socket

import numpy as np
import pytest

from saelab.autointerp.backends.http import BackendError, HttpConfig, OpenAIBackend
from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.example_set import ExampleSet
from saelab.autointerp.explanation import NEVER_FIRES
from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.autointerp.run import AutointerpConfig, _shuffled_partner, records_frame, run_autointerp

FILLER = [" the", " a", " of", " and", " in", " to", " is", " it"]
WORDS = [" apple", " river", " stone", " cloud", " music"]
TIMING = ("seconds", "score_seconds")


def _context(seq: int, word: str | None, at: int = 3, value: float = 1.0) -> Context:
    tokens = [FILLER[(seq + i) % len(FILLER)] for i in range(6)]
    acts = [0.0] * 6
    if word is not None:
        tokens[at], acts[at] = word, value
    return Context(tuple(tokens), tuple(range(100, 106)), tuple(acts), (seq, 0))


def planted_examples(n_features: int = 4, never: tuple[int, ...] = (4,)) -> ExampleSet:
    """Feature f fires (1.0, or 0.5 on weaker windows) on ``WORDS[f]`` only; features in
    ``never`` fired nowhere."""
    out, seq = {}, 0
    for f in range(n_features + len(never)):
        if f in never:
            out[f] = FeatureExamples(f, "sae", 0.0, 0.0, 0.0, negatives=(_context(1000 + f, None),))
            continue
        word = WORDS[f]
        explain = tuple(_context(seq + i, word) for i in range(3))
        positives = tuple(_context(seq + 3 + i, word, value=0.5 + 0.25 * i) for i in range(3))
        negatives = tuple(_context(seq + 6 + i, None) for i in range(4))
        seq += 10
        out[f] = FeatureExamples(f, "sae", 0.0, 0.01, 1.0, explain, positives, negatives)
    return ExampleSet("k", "sae", "src", ExamplesConfig(), 1000, out)


CFG = AutointerpConfig(scorers=("simulation",))


def test_records_have_scores_and_controls(tmp_path):
    examples = planted_examples()
    frame = run_autointerp(examples, tmp_path / "run.jsonl", config=CFG, progress=False)
    assert len(frame) == 2 * len(examples)  # one per (feature, explainer)
    assert sorted(set(frame["explainer"])) == ["ngram_pattern", "top_tokens"]
    scored = frame[frame["feature"] < 4]
    assert (scored["shuffled_from"] != scored["feature"]).all()
    assert scored["shuffled_from"].isin(range(4)).all()
    # The planted explanation predicts the activations almost exactly; another feature's does not.
    assert (scored["score_simulation"] > 0.9).all()
    assert (scored["shuffled_simulation"] < 0.5).all()
    assert (scored["all_negative_simulation"] == 0.0).all()
    top = scored[scored["explainer"] == "top_tokens"].set_index("feature")
    for f in range(4):
        assert json.dumps(WORDS[f]) in top.loc[f, "explanation"]
    for record in (json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()):
        assert set(record) >= {"feature", "explainer", "explanation", "skipped"}
        if record["feature"] < 4:
            assert set(record["score"]) == set(record["shuffled"]) == set(record["all_negative"]) == {"simulation"}
    assert (tmp_path / "run.explanations.jsonl").is_file()


def test_never_firing_feature_gets_a_skip_record_without_scores(tmp_path):
    frame = run_autointerp(planted_examples(), tmp_path / "run.jsonl", config=CFG, progress=False)
    skipped = frame[frame["feature"] == 4]
    assert len(skipped) == 2
    assert (skipped["skipped"] == NEVER_FIRES).all() and (skipped["explanation"] == "").all()
    assert skipped["score_simulation"].isna().all() and skipped["shuffled_from"].isna().all()
    assert (frame[frame["feature"] == 4]["n_positives"] == 0).all()


def test_rerun_does_nothing_and_a_torn_line_is_redone(tmp_path):
    out = tmp_path / "run.jsonl"
    examples = planted_examples()
    run_autointerp(examples, out, config=CFG, progress=False)
    before, explanations = out.read_bytes(), (tmp_path / "run.explanations.jsonl").read_bytes()
    run_autointerp(examples, out, config=CFG, progress=False)
    assert out.read_bytes() == before
    assert (tmp_path / "run.explanations.jsonl").read_bytes() == explanations

    lines = before.decode().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # a crash mid-write
    run_autointerp(examples, out, config=CFG, progress=False)
    redone = [json.loads(line) for line in out.read_text().splitlines()]
    original = [json.loads(line) for line in lines]
    assert len(redone) == len(original)

    def strip(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in TIMING}

    assert [strip(r) for r in redone] == [strip(r) for r in original]
    assert len(records_frame(out)) == len(original)


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_shuffled_partner_is_a_derangement(n):
    features = list(range(10, 10 + n))
    for seed in range(5):
        partner = _shuffled_partner(features, seed)
        assert sorted(partner) == features and sorted(partner.values()) == features
        assert all(partner[f] != f for f in features)
    assert _shuffled_partner([3], 0) == {}


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown explainer 'gpt'.*top_tokens"):
        AutointerpConfig(explainers=("gpt",))
    with pytest.raises(ValueError, match=r"unknown scorer 'vibes'.*simulation"):
        AutointerpConfig(scorers=("vibes",))
    with pytest.raises(ValueError, match="at least one explainer"):
        AutointerpConfig(scorers=())
    assert AutointerpConfig(explainers=["top_tokens"]).explainers == ("top_tokens",)


def test_llm_explainer_without_backend_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="need a backend"):
        run_autointerp(planted_examples(), tmp_path / "run.jsonl", config=AutointerpConfig(explainers=("llm",),
                       scorers=("simulation",)), progress=False)  # fmt: skip
    assert not list(tmp_path.iterdir())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("existing", [False, True])
def test_unreachable_endpoint_fails_before_writing(tmp_path, existing):
    out = tmp_path / "run.jsonl"
    if existing:
        run_autointerp(planted_examples(), out, config=CFG, progress=False)
    before = out.read_bytes() if existing else None
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    backend = OpenAIBackend.from_config(HttpConfig(base_url=url, model="x", timeout_s=2))
    cfg = AutointerpConfig(explainers=("llm",), scorers=("detection",))
    with pytest.raises(BackendError, match=re.escape(url)):
        run_autointerp(planted_examples(), out, config=cfg, backend=backend, progress=False)
    if existing:
        assert out.read_bytes() == before
    else:
        assert not out.exists() and not (tmp_path / "run.explanations.jsonl").exists()


def test_records_frame_flattens_metrics(tmp_path):
    run_autointerp(planted_examples(n_features=2, never=()), tmp_path / "r.jsonl", config=CFG, progress=False)
    frame = records_frame(tmp_path / "r.jsonl")
    assert {"score_simulation", "shuffled_simulation", "all_negative_simulation"} <= set(frame.columns)
    assert np.isfinite(frame["score_simulation"]).all()
