"""From a model and a corpus to a saved, evaluated SAE: the steps the CLI, `make saes` and
notebook 04 share.

    store = activation_store(model, hooks, n_tokens=2_000_000)
    run = train_on_store(store, cfg, RunConfig(checkpoint_dir=...), target_l0=32)
    path = save_sae(run.sae, out_dir, dtype="float16")
    result = evaluate_saved(model, path, store)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.corpus import CorpusConfig
from saelab.evals.harness import EvalResult, evaluate_sae
from saelab.saes import load_sae
from saelab.store import ActivationStore, StoreConfig, build_store
from saelab.store.config import StoreDtype
from saelab.train.base import TrainableSAE
from saelab.train.calibrate import CalibrationConfig, CalibrationResult, calibrate_sparsity
from saelab.train.config import TrainConfig
from saelab.train.sweep import SweepResult, check_sweep, fit_sweep
from saelab.train.trainer import BatchSource, RunConfig, TrainResult, fit

if TYPE_CHECKING:
    from saelab.distributed import Replicas, World

log = logging.getLogger(__name__)


def activation_store(
    model: HookedTransformer,
    hooks: Sequence[str],
    *,
    n_tokens: int,
    seq_len: int = 128,
    seed: int = 0,
    held_out_fraction: float = 0.05,
    corpus: CorpusConfig | None = None,
    progress: bool = True,
    world: World | None = None,
    dtype: StoreDtype | None = None,
) -> ActivationStore:
    """Build (or reuse) a store of ``n_tokens`` rows per hook from the offline corpus mix
    (every rank of ``world`` building its share, when given). ``dtype`` None: the model's
    :func:`store_dtype_for`."""
    # The corpus must hold a bit more than the store needs: BOS, separators and special
    # tokens are not stored, and packing cuts the last document.
    corpus = corpus or CorpusConfig(target_tokens=int(n_tokens * 1.25) + 10_000, seed=seed)
    cfg = StoreConfig(
        model_name=model.cfg.model_name,
        hooks=tuple(hooks),
        seq_len=seq_len,
        n_tokens=n_tokens,
        held_out_fraction=held_out_fraction,
        dtype=dtype or store_dtype_for(model),
    )
    return build_store(model, corpus, cfg, progress=progress, world=world)


def store_dtype_for(model: HookedTransformer) -> StoreDtype:
    """float16 halves the disk of float32, but Gemma's residual stream leaves its range: its
    embeddings are scaled by sqrt(d_model) and some positions exceed 65,504 by the middle layers
    (Gemma-3-270M at blocks.12). bfloat16 has float32's range at float16's size."""
    names = f"{model.cfg.original_architecture or ''} {model.cfg.model_name}".lower()
    return "bfloat16" if "gemma" in names else "float16"


def store_source(
    store: ActivationStore, hook: str, batch_size: int, seed: int, replicas: Replicas | None = None, *,
    device: str | torch.device | None = None,
) -> BatchSource:
    """A resumable batch source over the store's training split (epochs repeat as needed).
    With ``replicas`` it serves this rank's share of each global batch of ``batch_size``."""
    rank, world_size = (0, 1) if replicas is None else (replicas.rank, replicas.size)

    def source(start: int) -> Iterator[Tensor]:
        return store.iter_batches(
            hook, batch_size, seed=seed, start_batch=start, epochs=None, drop_last=True,
            rank=rank, world_size=world_size, device=device,
        )

    return source


@dataclasses.dataclass
class PipelineRun:
    """A trained SAE and how it got there."""

    train: TrainResult
    calibration: CalibrationResult | None

    @property
    def sae(self) -> TrainableSAE[Any]:
        return self.train.sae


def train_on_store(
    store: ActivationStore,
    cfg: TrainConfig,
    run: RunConfig | None = None,
    *,
    target_l0: float | None = None,
    calibration_steps: int = 200,
    replicas: Replicas | None = None,
) -> PipelineRun:
    """Optionally calibrate sparsity to ``target_l0``, then train ``cfg`` on the store
    (data-parallel over ``replicas`` when given: see :func:`saelab.train.trainer.fit`)."""
    if cfg.hook_name not in store.hooks:
        raise ValueError(f"cfg.hook_name {cfg.hook_name!r} is not in the store; it has {list(store.hooks)}")
    if store.d_in(cfg.hook_name) != cfg.d_in:
        raise ValueError(f"cfg.d_in={cfg.d_in} but the store's {cfg.hook_name} has width {store.d_in(cfg.hook_name)}")
    source = store_source(store, cfg.hook_name, cfg.batch_size, cfg.seed, replicas, device=cfg.device)
    calibration = None
    if target_l0 is not None:
        calib = CalibrationConfig(
            target_l0=target_l0,
            steps_per_trial=calibration_steps,
            measure_last=max(1, calibration_steps // 4),
        )
        calibration = calibrate_sparsity(cfg, source, calib, replicas)
        cfg = calibration.cfg
    cfg = dataclasses.replace(cfg, context_size=store.seq_len)
    return PipelineRun(train=fit(cfg, source, run, replicas), calibration=calibration)


def train_sweep(
    store: ActivationStore,
    configs: Sequence[TrainConfig],
    run: RunConfig | None = None,
    *,
    data_seed: int | None = None,
    replicas: Replicas | None = None,
) -> SweepResult:
    """Train every config on the store in one pass: each batch is read once and fed to each
    member (:mod:`saelab.train.sweep`). The batch order comes from ``data_seed`` (default:
    the first member's seed), so a member equals the same config trained alone when its seed
    is that one."""
    names = check_sweep(configs)
    hook = configs[0].hook_name
    if hook not in store.hooks:
        raise ValueError(f"The sweep's hook {hook!r} is not in the store; it has {list(store.hooks)}")
    if store.d_in(hook) != configs[0].d_in:
        raise ValueError(f"The sweep's d_in={configs[0].d_in} but the store's {hook} has width {store.d_in(hook)}")
    configs = [dataclasses.replace(c, context_size=store.seq_len) for c in configs]
    seed = configs[0].seed if data_seed is None else data_seed
    source = store_source(store, hook, configs[0].batch_size, seed, replicas, device=configs[0].device)
    log.info("Sweep of %d SAEs at %s: %s", len(names), hook, ", ".join(names))
    return fit_sweep(configs, source, run, replicas)


def evaluate_saved(
    model: HookedTransformer,
    sae_path: str | Path,
    store: ActivationStore,
    *,
    max_sequences: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate a saved SAE (as SAELens loads it) on the store's held-out sequences, which
    training never saw."""
    sae = load_sae(sae_path, device=model.cfg.device)
    tokens = store.tokens("held_out")
    if max_sequences is not None:
        tokens = tokens[:max_sequences]
    return evaluate_sae(model, sae, tokens, progress=progress)


def summary_table(results: Mapping[str, tuple[TrainResult, EvalResult | None]]) -> pd.DataFrame:
    """One row per SAE: its training end point and its held-out evaluation side by side (the
    table the command line prints at the end of a run)."""
    rows = []
    for name, (train, evaluation) in results.items():
        row = {
            "sae": name,
            "activation": train.cfg.activation,
            "d_sae": train.cfg.d_sae,
            "steps": train.cfg.total_steps,
            "train_l0": train.final.get("l0"),
            "train_explained_variance": train.final.get("explained_variance"),
        }
        if evaluation is not None:
            row.update(
                l0=evaluation.l0,
                explained_variance=evaluation.explained_variance,
                explained_variance_typical=evaluation.explained_variance_typical,
                n_massive=evaluation.n_massive,
                ce_loss_recovered=evaluation.ce_loss_recovered,
                kl_div=evaluation.kl_div,
                dead_fraction=evaluation.dead_fraction,
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("sae")


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-markdown table of ``frame`` (index included), without extra dependencies."""
    def cell(value: object) -> str:
        return format(value, floatfmt) if isinstance(value, float) else str(value)

    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index), *map(cell, row.tolist())]) + " |")
    return "\n".join(lines)
