"""Is one model's dictionary more explainable? LLM-free explanations of a seeded sample of
each suite's features, on the same texts, each score beside its shuffled control.

The features are drawn among those that fire on the texts (a feature with no activating
window has nothing to explain); the explainers and scorers are :mod:`saelab.autointerp`'s
defaults, so notebook 06's numbers and these are the same measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab.autointerp.collect import collect_examples
from saelab.autointerp.decompositions import sae_directions
from saelab.autointerp.run import AutointerpConfig, run_autointerp
from saelab.autointerp.sources import TextSource
from saelab.autointerp.summary import score_summary
from saelab.extract.per_token import PerTokenFeatures


def explanation_records(
    model: HookedTransformer,
    sae: SAE,
    hook: str,
    texts: Sequence[str],
    per_token: PerTokenFeatures,
    out: str | Path,
    *,
    n_features: int = 24,
    seed: int = 0,
    config: AutointerpConfig | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Explain and score ``n_features`` features drawn (``seed``) among those of ``sae`` that
    fire on ``texts`` (``per_token``: its features of ``texts``, which say which fire); records
    are written to ``out`` (a ``.jsonl``) and resumed from it."""
    if n_features < 2:
        raise ValueError(
            f"n_features must be >= 2 (a shuffled control is another feature's explanation), got {n_features}"
        )
    if per_token.d_sae != int(sae.cfg.d_sae) or per_token.n_texts != len(texts):
        raise ValueError(
            f"per_token ({per_token.n_texts} texts, d_sae {per_token.d_sae}) is not this SAE's "
            f"features of these {len(texts)} texts (d_sae {int(sae.cfg.d_sae)})"
        )
    firing = np.unique(per_token.feature_idx.numpy())
    if len(firing) < 2:
        raise ValueError(f"Only {len(firing)} features of {hook} fire on these {len(texts)} texts; give more text")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(f) for f in rng.choice(firing, size=min(n_features, len(firing)), replace=False))
    examples = collect_examples(TextSource(model, texts, hook), sae_directions(sae), model, features=chosen,
                                progress=progress)  # fmt: skip
    frame = run_autointerp(examples, out, config=config or AutointerpConfig(), progress=progress)
    return pd.DataFrame(frame.loc[frame["feature"].isin(chosen)]).reset_index(drop=True)


def explainability_table(records: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """:func:`saelab.autointerp.score_summary` per model, stacked with a ``model`` column."""
    if not records:
        raise ValueError("records is empty; pass {model: explanation_records(...)}")
    frames = [score_summary(frame).assign(model=model) for model, frame in records.items()]
    table = pd.concat(frames, ignore_index=True)
    return pd.DataFrame(table, columns=["model", *[c for c in table.columns if c != "model"]])
