"""The SAE features a steering comparison tries, per category, from every steering hook.

Two sources, as Arad et al. (2025) separate them: the category's *specialists* (input
features, ranked by AUROC on the labelled texts) and its best *output* features (the
logit-lens screen over the whole SAE, then output scores on the select prompts; see
:mod:`saelab.interventions.output_screen`). Only the select half of the prompts and the
labelled dataset are read: the report half never influences the choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from saelab.interventions.arms import ArmTools
from saelab.interventions.category_steering import ranked_specialists
from saelab.interventions.concept_tokens import ConceptTokens
from saelab.interventions.output_screen import logit_lens_screen, output_scores, vector_output_scores

COLUMNS = ["category", "hook", "feature", "specialist", "auroc", "screen", "output_score", "own_score", "chosen"]


def feature_candidates(
    model: HookedTransformer,
    tools: ArmTools,
    texts: Sequence[str],
    labels: Sequence[str],
    select_prompts: Sequence[list[int]],
    tokens: ConceptTokens,
    categories: Sequence[str],
    *,
    specialists: int,
    screen_top: int,
    n_output: int,
    strength: float,
) -> pd.DataFrame:
    """Every screened feature of every hook with its scores; ``chosen`` marks the candidates:
    the ``specialists`` best AUROCs and the ``n_output`` best output scores, over all hooks."""
    frames = []
    token_sets = {c: tokens.ids(c) for c in categories}
    for hook, sae in tools.saes.items():
        ranked = ranked_specialists(model, sae, texts, labels, top=max(1, specialists), categories=categories)
        screen = logit_lens_screen(model, sae, token_sets, top=screen_top)
        for category in categories:
            spec = ranked.loc[ranked["category"] == category, ["feature", "auroc"]]
            scr = screen.loc[screen["category"] == category, ["feature", "screen"]]
            feats = spec.merge(scr, on="feature", how="outer")
            feats = feats.loc[tools.stats[hook].typical_max[feats["feature"].astype(int).tolist()].numpy() > 0]
            scores = output_scores(model, sae, feats["feature"].astype(int).tolist(), select_prompts,
                                   token_sets[category], stats=tools.stats[hook], strength=strength)  # fmt: skip
            feats = feats.merge(scores, on="feature")
            feats.insert(0, "hook", hook)
            feats.insert(0, "category", category)
            feats["specialist"] = feats["auroc"].notna()
            frames.append(feats)
    table = pd.concat(frames, ignore_index=True)
    table["chosen"] = False
    for category in categories:
        mine = table.loc[table["category"] == category]
        best_input = mine.sort_values("auroc", ascending=False, na_position="last").index[:specialists]
        best_output = mine.sort_values("output_score", ascending=False).index[:n_output]
        table.loc[best_input.union(best_output), "chosen"] = True
    return (
        table.loc[:, COLUMNS].sort_values(["category", "output_score"], ascending=[True, False]).reset_index(drop=True)
    )


def diffmean_hook(
    model: HookedTransformer,
    tools: ArmTools,
    category: str,
    select_prompts: Sequence[list[int]],
    tokens: ConceptTokens,
    strength: float,
) -> tuple[str, np.ndarray]:
    """The hook whose DiffMean vector (times ``strength``) has the best output score, and every hook's score."""
    assert tools.diffmean is not None
    hooks = list(tools.saes)
    scores = []
    for hook in hooks:
        vector = tools.diffmean.vector(category, hook)[None] * strength
        scores.append(float(vector_output_scores(model, hook, vector, select_prompts, tokens.ids(category))[0]))
    return hooks[int(np.argmax(scores))], np.asarray(scores)


def random_feature(tools: ArmTools, hook: str, avoid: Sequence[int], seed: int) -> int:
    """A feature that fires on the statistics' sample, drawn at random, not one of ``avoid``."""
    alive = torch.nonzero(tools.stats[hook].typical_max > 0).flatten().numpy()
    pool = np.setdiff1d(alive, np.asarray(list(avoid), dtype=np.int64))
    if pool.size == 0:
        raise ValueError(f"no live feature at {hook} to draw a random control from")
    return int(np.random.default_rng(seed).choice(pool))
