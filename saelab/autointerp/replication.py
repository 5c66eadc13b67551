"""Are SAE features more interpretable than the model's own basis, PCA, ICA and random
directions? The comparison of Cunningham et al. (2023), run with one pipeline for all:
the same held-out activations, the same examples pass, the same explainers and scorers.

PCA and ICA are fitted on a sample of the store's *train* split, and every decomposition is
explained and scored on its held-out split. ``n_features`` directions are drawn at random
from each (seeded). Nothing here is tuned per decomposition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Backend
from saelab.autointerp.collect import collect_examples
from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.decompositions import Decomposition, ica, neurons, pca, random_directions, sae_directions
from saelab.autointerp.run import AutointerpConfig, run_autointerp
from saelab.autointerp.scorers.embedding import TextEmbedder
from saelab.autointerp.scorers.metrics import bootstrap_mean_ci
from saelab.autointerp.sources import StoreSource
from saelab.autointerp.summary import metrics_of
from saelab.store.reader import ActivationStore

DECOMPOSITIONS: tuple[str, ...] = ("sae", "ica", "pca", "neurons", "random")
"""In the order of the paper's finding (SAE > ICA > PCA > neurons), random last."""


@dataclass(frozen=True)
class ReplicationConfig(JsonConfig):
    n_features: int = 100
    """Directions explained and scored per decomposition."""
    fit_rows: int = 20_000
    """Train-split activation rows that PCA and ICA are fitted on."""
    decompositions: tuple[str, ...] = DECOMPOSITIONS
    held_out_sequences: int | None = None
    """Read only the first this many held-out sequences (None: all)."""
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "decompositions", tuple(self.decompositions))
        problems = [f"unknown decomposition {d!r} (valid: {list(DECOMPOSITIONS)})"
                    for d in self.decompositions if d not in DECOMPOSITIONS]  # fmt: skip
        if self.n_features < 2:
            problems.append(f"n_features must be at least 2 (the shuffled control needs another feature), "
                            f"got {self.n_features}")  # fmt: skip
        if self.fit_rows < 100:
            problems.append(f"fit_rows must be at least 100, got {self.fit_rows}")
        self.raise_problems(problems)


def fit_sample(store: ActivationStore, hook: str, rows: int, seed: int) -> torch.Tensor:
    """``rows`` activation rows drawn at random from the store's train split (fp32, CPU)."""
    batch = next(iter(store.iter_batches(hook, rows, split="train", shuffle=True, seed=seed, device="cpu")))
    return batch.float()


def build_decompositions(sae: SAE, sample: torch.Tensor, names: Sequence[str], seed: int = 0) -> list[Decomposition]:
    d_model = sample.shape[1]
    makers = {
        "sae": lambda: sae_directions(sae),
        "ica": lambda: ica(sample, seed=seed),
        "pca": lambda: pca(sample),
        "neurons": lambda: neurons(d_model),
        "random": lambda: random_directions(d_model, seed=seed),
    }
    return [makers[name]() for name in names]


def compare_decompositions(
    model: HookedTransformer,
    sae: SAE,
    store: ActivationStore,
    out: str | Path,
    *,
    config: ReplicationConfig | None = None,
    autointerp: AutointerpConfig | None = None,
    examples_config: ExamplesConfig | None = None,
    backend: Backend | None = None,
    embedder: TextEmbedder | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Every record of the comparison (one per decomposition, feature and explainer), appended to ``out``."""
    cfg = config or ReplicationConfig()
    hook = sae.cfg.metadata.hook_name
    sample = fit_sample(store, hook, cfg.fit_rows, cfg.seed)
    source = StoreSource(store, hook, "held_out", max_sequences=cfg.held_out_sequences)
    frames = []
    for dec in build_decompositions(sae, sample, cfg.decompositions, cfg.seed):
        rng = np.random.default_rng(cfg.seed)
        features = sorted(rng.choice(dec.n_features, size=min(cfg.n_features, dec.n_features), replace=False).tolist())
        examples = collect_examples(source, dec, model, features=features, config=examples_config, progress=progress)
        frames.append(run_autointerp(examples, out, config=autointerp, backend=backend, embedder=embedder,
                                     progress=progress))  # fmt: skip
    frame = pd.concat(frames).drop_duplicates(subset=["decomposition", "feature", "explainer"], keep="last")
    return frame.reset_index(drop=True)


def replication_table(frame: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean score per (decomposition, explainer, metric) with a bootstrap 95% CI, beside the
    mean of its shuffled control and the margin between them. Features that never fired (no
    explanation) count as unscored and are listed in ``n_unscored``."""
    rows = []
    metrics = metrics_of(frame)
    for key, part in frame.groupby(["decomposition", "explainer"], sort=False):
        dec, explainer = key  # type: ignore[misc]
        for metric in metrics:
            score = part[f"score_{metric}"].to_numpy(float)
            control = part[f"shuffled_{metric}"].to_numpy(float)
            mean = bootstrap_mean_ci(score, n_boot=n_boot, seed=seed)
            shuffled = bootstrap_mean_ci(control, n_boot=n_boot, seed=seed)
            margin = bootstrap_mean_ci(score - control, n_boot=n_boot, seed=seed)
            rows.append({"decomposition": dec, "explainer": explainer, "metric": metric, "n": mean.n,
                         "n_unscored": len(part) - mean.n, "mean": mean.mean, "low": mean.low, "high": mean.high,
                         "mean_shuffled": shuffled.mean, "margin": margin.mean, "margin_low": margin.low,
                         "margin_high": margin.high})  # fmt: skip
    return pd.DataFrame(rows)


def paper_ordering_holds(table: pd.DataFrame, explainer: str, metric: str) -> pd.Series:
    """For one (explainer, metric): is each step of SAE > ICA > PCA > neurons true of the
    means, and is it clear (the two 95% CIs do not overlap)? Indexed by "a > b"."""
    part = table[(table["explainer"] == explainer) & (table["metric"] == metric)].set_index("decomposition")
    order = [d for d in ("sae", "ica", "pca", "neurons") if d in part.index]
    out = {}
    for a, b in zip(order, order[1:], strict=False):
        higher = part.loc[a, "mean"] > part.loc[b, "mean"]
        clear = part.loc[a, "low"] > part.loc[b, "high"]
        out[f"{a} > {b}"] = "yes, clearly" if higher and clear else ("yes, within the CIs" if higher else "no")
    return pd.Series(out, name=f"{explainer} / {metric}")
