"""Explain and score many features: every explainer, every scorer with its controls, one
JSON line per (feature, explainer), resumable. The features' examples come first, from
:func:`~saelab.autointerp.collect.collect_examples` (cached), as notebook 06 shows.

Two files: ``<out>.explanations.jsonl`` (written as the explainers go, so an interrupted
run never asks an LLM twice) and ``<out>`` (one scored record per feature and explainer).
A rerun reads both and does only what is missing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Backend
from saelab.autointerp.example_set import ExampleSet
from saelab.autointerp.explainers.llm import LlmExplainer, LlmExplainerConfig
from saelab.autointerp.explainers.ngram import NgramPatternExplainer
from saelab.autointerp.explainers.top_tokens import TopTokensExplainer
from saelab.autointerp.explanation import Explanation
from saelab.autointerp.records import append_records, read_records
from saelab.autointerp.scorers.detection import explanation_language_warning
from saelab.autointerp.scorers.embedding import MemoEmbedder, TextEmbedder
from saelab.autointerp.scoring import LLM_SCORERS, SCORERS, score_feature

log = logging.getLogger(__name__)

EXPLAINERS: tuple[str, ...] = ("top_tokens", "ngram_pattern", "llm")


@dataclass(frozen=True)
class AutointerpConfig(JsonConfig):
    """Which explainers and scorers run, and how the controls are drawn."""

    explainers: tuple[str, ...] = ("top_tokens", "ngram_pattern")
    """Any of "top_tokens", "ngram_pattern", "llm" (the LLM needs a backend)."""
    scorers: tuple[str, ...] = ("simulation", "embedding")
    """Any of "simulation", "embedding", "detection", "fuzzing" (the last two need a backend)."""
    hard_negatives: bool = False
    """Score against random non-activating windows plus the hard negatives (harder, lower scores)."""
    llm_batch: int = 8
    """Features per batched LLM explainer call."""
    seed: int = 0
    """Seeds which other feature's explanation each feature gets as its shuffled control."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "explainers", tuple(self.explainers))
        object.__setattr__(self, "scorers", tuple(self.scorers))
        problems = [
            f"unknown explainer {e!r} (valid: {list(EXPLAINERS)})" for e in self.explainers if e not in EXPLAINERS
        ]
        problems += [f"unknown scorer {s!r} (valid: {list(SCORERS)})" for s in self.scorers if s not in SCORERS]
        if not self.explainers or not self.scorers:
            problems.append("at least one explainer and one scorer are needed")
        if self.llm_batch < 1:
            problems.append(f"llm_batch must be positive, got {self.llm_batch}")
        self.raise_problems(problems)


def run_autointerp(
    examples: ExampleSet,
    out: str | Path,
    *,
    config: AutointerpConfig | None = None,
    backend: Backend | None = None,
    embedder: TextEmbedder | None = None,
    llm_explainer: LlmExplainerConfig | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Explain and score every feature of ``examples``; returns :func:`records_frame` of ``out``.
    ``llm_explainer`` sets the LLM explainer's prompt sizes (fewer examples: faster on a CPU)."""
    cfg = config or AutointerpConfig()
    needs_llm = "llm" in cfg.explainers or any(s in LLM_SCORERS for s in cfg.scorers)
    if needs_llm and backend is None:
        raise ValueError("The llm explainer and the detection/fuzzing scorers need a backend: pass "
                         "backend=LocalBackend(model) or OpenAIBackend(HttpConfig(url, model)).")  # fmt: skip
    check = getattr(backend, "check", None)
    if needs_llm and callable(check):
        check()  # an unreachable endpoint fails here, before anything is written
    if "embedding" in cfg.scorers and embedder is None:
        from saelab.autointerp.backends.embedder import load_embedder

        embedder = load_embedder()
    if embedder is not None:
        embedder = MemoEmbedder(embedder)
    out = Path(out)
    explanations_path = out.with_name(out.name.removesuffix(".jsonl") + ".explanations.jsonl")
    for name in cfg.explainers:
        texts = _explanations(examples, name, explanations_path, cfg, _explainer(name, backend, llm_explainer),
                              progress)  # fmt: skip
        _score_all(examples, name, texts, out, cfg, backend, embedder, progress)
    return records_frame(out)


def _explainer(name: str, backend: Backend | None,
               llm_config: LlmExplainerConfig | None) -> Explain:  # fmt: skip
    if name == "llm":
        explainer = LlmExplainer(backend, llm_config)  # type: ignore[arg-type]
        return explainer.explain_many
    single = TopTokensExplainer() if name == "top_tokens" else NgramPatternExplainer()
    return lambda batch: [single.explain(ex) for ex in batch]


Explain = Callable[[list], list[Explanation]]


def _explanations(examples: ExampleSet, name: str, path: Path, cfg: AutointerpConfig, explain: Explain,
                  progress: bool) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Every feature's explanation by explainer ``name``: read back, or made and appended."""
    known = {r["feature"]: r for r in read_records(path)
             if r["explainer"] == name and r["decomposition"] == examples.decomposition}  # fmt: skip
    todo = [ex for ex in examples if ex.feature not in known]
    step = cfg.llm_batch if name == "llm" else 64
    for start in tqdm(range(0, len(todo), step), desc=f"explain ({name})", disable=not progress or not todo):
        batch = todo[start : start + step]
        began = time.perf_counter()
        made = explain(batch)
        seconds = (time.perf_counter() - began) / max(1, len(batch))
        records = [{"feature": e.feature, "decomposition": examples.decomposition, "explainer": name,
                    "explanation": e.text, "skipped": e.skipped, "seconds": seconds} for e in made]  # fmt: skip
        append_records(path, records)
        known.update({r["feature"]: r for r in records})
    return known


def _shuffled_partner(features: Sequence[int], seed: int) -> dict[int, int]:
    """A derangement: every feature gets a different feature's explanation."""
    order = list(features)
    if len(order) < 2:
        return {}
    shifted = order[:]
    random.Random(seed).shuffle(shifted)
    # Rotating a shuffled order by one never maps a feature to itself.
    return {shifted[i]: shifted[(i + 1) % len(shifted)] for i in range(len(shifted))}


def _score_all(examples: ExampleSet, name: str, texts: dict[int, dict[str, Any]], out: Path, cfg: AutointerpConfig,
               backend: Backend | None, embedder: TextEmbedder | None, progress: bool) -> None:  # fmt: skip
    done = {r["feature"] for r in read_records(out)
            if r["explainer"] == name and r["decomposition"] == examples.decomposition}  # fmt: skip
    usable = [f for f, r in texts.items() if not r["skipped"] and r["explanation"].strip()]
    partner = _shuffled_partner(sorted(usable), cfg.seed)
    if len(usable) < 2:
        log.warning("Only %d feature(s) have a %s explanation; the shuffled control needs two, so nothing is "
                    "scored.", len(usable), name)  # fmt: skip
    for ex in tqdm([ex for ex in examples if ex.feature not in done], desc=f"score ({name})", disable=not progress):
        record = dict(texts[ex.feature])
        n_negatives = len(ex.negatives) + (len(ex.hard_negatives) if cfg.hard_negatives else 0)
        record.update(frequency=ex.frequency, max_activation=ex.max_activation, n_positives=len(ex.positives),
                      n_negatives=n_negatives)  # fmt: skip
        if ex.feature in partner:
            shuffled = texts[partner[ex.feature]]["explanation"]
            began = time.perf_counter()
            record.update(score_feature(ex, record["explanation"], shuffled, cfg.scorers, backend=backend,
                                        embedder=embedder, hard_negatives=cfg.hard_negatives))  # fmt: skip
            record.update(shuffled_from=partner[ex.feature], score_seconds=time.perf_counter() - began,
                          language_warning=explanation_language_warning(record["explanation"]))  # fmt: skip
        append_records(out, [record])


def records_frame(path: str | Path) -> pd.DataFrame:
    """One row per (feature, explainer): explanation, and ``score_*``, ``shuffled_*``,
    ``all_negative_*`` columns per metric (NaN where a feature could not be scored)."""
    rows = []
    for r in read_records(Path(path)):
        row = {k: v for k, v in r.items() if not isinstance(v, dict)}
        for kind in ("score", "shuffled", "all_negative"):
            row.update({f"{kind}_{metric}": value for metric, value in r.get(kind, {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)

