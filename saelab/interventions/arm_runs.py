"""Sampling and scoring continuations for (prompt, sample, arm) rows.

All the arms of one prompt share a padded batch and, within a (prompt, sample), their random
numbers: the baseline row and a steered row differ only through the edit (or, for the
prompting arm, the instruction). Every continuation is scored as a continuation of the
*user's* prompt, instruction or not: perplexity and prompt relevance under the unsteered
model (:mod:`saelab.interventions.text_scores`), distinct-2 of its tokens
(:mod:`saelab.interventions.repetition`), and the concept probe's probability of every
category (``p_<category>`` columns, so one baseline serves every category).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.extract.tokens import tokenize
from saelab.interventions.arms import Arm, ArmTools, RowSteering
from saelab.interventions.generation import decode_rows, even_batches, prompt_ids, sample_rows
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.repetition import distinct_n
from saelab.interventions.text_scores import continuation_scores

Row = tuple[int, int, Arm]
"""(prompt index, sample, arm)."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    seed: int


def check_prompts(model: HookedTransformer, texts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Each prompt's token ids (BOS first), or a clear error: none given, an empty one, or one
    that leaves no room in the context for the continuation."""
    if not texts:
        raise ValueError("no prompts to steer on")
    ids = [prompt_ids(model, t) for t in texts]
    room = model.cfg.n_ctx - max_new_tokens
    long = [i for i, row in enumerate(ids) if len(row) > room]
    if long:
        raise ValueError(
            f"prompts {long[:5]} are longer than the context allows: {model.cfg.n_ctx} tokens minus "
            f"{max_new_tokens} new ones leaves {room}"
        )
    return ids


@dataclass
class ArmRunner:
    """Samples and scores rows of arms on a fixed list of prompts."""

    model: HookedTransformer
    tools: ArmTools
    probe: ConceptProbe
    texts: list[str]
    """The prompts as the user wrote them."""
    sampling: Sampling
    progress: bool = True

    def __post_init__(self) -> None:
        self.prompts = check_prompts(self.model, self.texts, self.sampling.max_new_tokens)
        """Token ids of each prompt, BOS first."""
        self._instructed: dict[tuple[int, str], list[int]] = {}

    def __call__(self, plan: Sequence[Row], split: str, desc: str = "steering") -> pd.DataFrame:
        """One scored row per (prompt, sample, arm) of ``plan``."""
        plan = list(plan)
        texts, cont = self._sample(plan, desc)
        arms = [a for _, _, a in plan]
        frame = pd.DataFrame({
            "prompt_index": [p for p, _, _ in plan], "split": split, "sample": [k for _, k, _ in plan],
            "arm": arms, "method": [a.method for a in arms], "target": [a.concept for a in arms],
            "hook": [a.hook for a in arms], "feature": [a.feature for a in arms],
            "strength": [a.strength for a in arms], "text": pd.Series(texts, dtype=object),
        })  # fmt: skip
        return self._score(frame, [self.prompts[p] for p, _, _ in plan], cont)

    def _row_ids(self, prompt: int, arm: Arm) -> list[int]:
        if arm.method != "prompting":
            return self.prompts[prompt]
        return self._instructed[(prompt, arm.concept)]

    def _sample(self, plan: list[Row], desc: str) -> tuple[list[str], list[list[int]]]:
        self._instructed = self._instruction_ids(plan)
        texts: list[str] = []
        cont: list[list[int]] = []
        starts = even_batches(len(plan))
        for lo in tqdm(starts, desc=desc, disable=not self.progress, leave=False):
            chunk = plan[lo : lo + starts.step]
            arms = [a for _, _, a in chunk]
            runner = RowSteering.build(self.model, arms, self.tools)
            out = sample_rows(
                self.model, [self._row_ids(p, a) for p, _, a in chunk], groups=[p * 1000 + k for p, k, _ in chunk],
                splice=runner, edited_rows=torch.tensor([a.edits for a in arms]),
                max_new_tokens=self.sampling.max_new_tokens, temperature=self.sampling.temperature,
                seed=self.sampling.seed,
            )  # fmt: skip
            chunk_texts, chunk_ids = decode_rows(self.model, out)
            texts += chunk_texts
            cont += chunk_ids
        return texts, cont

    def _instruction_ids(self, plan: list[Row]) -> dict[tuple[int, str], list[int]]:
        keys = sorted({(p, a.concept) for p, _, a in plan if a.method == "prompting"})
        for _, concept in keys:
            self.tools.check(Arm("prompting", concept))
        joined = [f"{self.tools.instructions[c]}\n{self.texts[p]}" for p, c in keys]
        return dict(zip(keys, tokenize(self.model, joined).ids, strict=True)) if keys else {}

    def _score(self, frame: pd.DataFrame, prompt_rows: list[list[int]], cont: list[list[int]]) -> pd.DataFrame:
        fluency = continuation_scores(self.model, prompt_rows, cont)
        visible = (frame["text"].str.strip().str.len() > 0).to_numpy()
        # A continuation with no visible text (all newlines, or EOS at once) shows no concept.
        probs = np.zeros((len(frame), len(self.probe.categories)))
        if visible.any():
            probs[visible] = self.probe.predict_proba(self.model, frame.loc[visible, "text"].tolist()).numpy()
        columns = {f"p_{c}": probs[:, j] for j, c in enumerate(self.probe.categories)}
        return frame.assign(
            perplexity=fluency.perplexity.numpy(), relevance=fluency.relevance.numpy(),
            distinct2=[distinct_n(ids, 2) for ids in cont], **columns,
        )  # fmt: skip
