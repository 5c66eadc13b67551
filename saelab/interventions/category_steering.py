"""Steering every category of the labelled dataset with its own specialists, in one call.

For each category the ``top`` specialists of the SAE (ranked by AUROC on the pooled
features of the labelled texts) are the candidates of one :func:`steering_sweep`; the result
is one held-out row per category, failures included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sae_lens import SAE
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab.analysis._checks import as_numpy
from saelab.analysis.specialists import specialists
from saelab.analysis.table_cache import cached_specialists
from saelab.extract.cache import cached_per_token
from saelab.interventions.feature_scale import feature_stats
from saelab.interventions.probe import ConceptProbe
from saelab.interventions.sweep import SweepConfig, SweepResult, steering_sweep, steering_table
from saelab.saes import sae_hook_name

_TABLE_TOP = 5
"""Rows per category in the default specialist table (``specialists``'s ``top``)."""


@dataclass(frozen=True)
class CategorySteering:
    table: pd.DataFrame
    """One row per category: chosen feature and strength, held-out concept gain with CI,
    perplexity ratio, relevance, ``passed``."""
    results: dict[str, SweepResult]
    candidates: pd.DataFrame
    """The specialists each category's sweep chose from (category, feature, rank, auroc)."""

    @property
    def n_passed(self) -> int:
        return int(self.table["passed"].to_numpy(bool).sum())


def ranked_specialists(
    model: HookedTransformer,
    sae: SAE,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    top: int,
    categories: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Each category's ``top`` specialists of ``sae`` by AUROC on the mean-pooled features of
    ``texts`` (read through the feature cache), as :func:`saelab.analysis.specialists` ranks them.

    For every category and ``top`` <= 5 this is the head of the table ``compare_layers``
    keeps for the same SAE and texts with the default settings (notebook 03's), read back
    when it exists (:mod:`saelab.analysis.table_cache`): the ranking does not depend on how
    many rows are reported or on the bootstrap."""
    hook = sae_hook_name(sae)
    pooled = cached_per_token(model, {hook: sae}, texts)[hook].pool("mean")
    if categories is None and top <= _TABLE_TOP:
        table = cached_specialists(as_numpy(pooled), labels)
        return pd.DataFrame(table[table["rank"] <= top]).reset_index(drop=True)
    return specialists(pooled, labels, top=top, n_bootstrap=0, categories=categories)


def steer_categories(
    model: HookedTransformer,
    sae: SAE,
    probe: ConceptProbe,
    texts: Sequence[str],
    labels: Sequence[str],
    prompts: Sequence[str],
    *,
    top: int = 3,
    categories: Sequence[str] | None = None,
    config: SweepConfig | None = None,
    progress: bool = True,
) -> CategorySteering:
    """One :func:`steering_sweep` per category over its ``top`` specialists at ``sae``'s hook."""
    hook = sae_hook_name(sae)
    ranked = ranked_specialists(model, sae, texts, labels, top=top, categories=categories)
    unknown = sorted(set(ranked["category"]) - set(probe.categories))
    if unknown:
        raise ValueError(f"the probe does not know the categories {unknown}; it knows {probe.categories}")
    stats = feature_stats(model, sae, texts)
    results: dict[str, SweepResult] = {}
    chosen = list(dict.fromkeys(ranked["category"]))
    for category in tqdm(chosen, desc=f"steering @ {hook}", disable=not progress):
        features = ranked.loc[ranked["category"] == category, "feature"].astype(int).tolist()
        results[category] = steering_sweep(model, sae, features, prompts, probe=probe, concept=category,
                                           config=config, stats=stats, progress=False)  # fmt: skip
    candidates = pd.DataFrame(ranked.loc[:, ["category", "feature", "rank", "auroc"]]).reset_index(drop=True)
    return CategorySteering(steering_table(list(results.values())), results, candidates)
