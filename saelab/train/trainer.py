"""The training loop: batches in, a trained SAE out, with checkpoints, progress and logging.

The trainer consumes activation batches and knows nothing about models or corpora. Data
comes from a *batch source*: a function ``start -> iterator of [batch, d_in] tensors`` that
yields the same batches from position ``start`` whenever it is asked. That is what makes
resume exact: a checkpoint stores the step (= batches consumed), and a resumed run asks the
source to start there, with the SAE, optimizer, schedule and RNG states restored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from saelab._util.config import JsonConfig
from saelab._util.keys import stable_hash
from saelab.train.base import TrainableSAE
from saelab.train.checkpoint import capture_rng, load_latest, restore_rng, save_checkpoint
from saelab.train.config import TrainConfig
from saelab.train.optim import make_optimizer, make_scheduler, train_step
from saelab.train.registry import make_sae
from saelab.train.replicated import check_in_sync, input_scale, metrics, share_size, whole_batch
from saelab.train.snapshots import check_snapshot_config, save_snapshot, snapshot_due, snapshot_folder

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

log = logging.getLogger(__name__)

Scheduler = torch.optim.lr_scheduler.LRScheduler

BatchSource = Callable[[int], Iterator[Float[Tensor, "batch d_in"]]]
"""``source(start)`` yields batches ``start, start+1, ...``; the same ones on every call."""


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """How a run is carried out (not what is trained): checkpoints, logging, progress."""

    checkpoint_dir: str | None = None
    """Folder for periodic checkpoints; None disables checkpointing (and resume)."""
    checkpoint_every: int = 200
    """Steps between checkpoints. A final checkpoint is always written at the end."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep on disk."""
    resume: bool = True
    """Continue from the newest checkpoint in ``checkpoint_dir`` when there is one."""
    log_every: int = 10
    """Steps between rows of the returned history (and W&B logs)."""
    progress: bool = True
    """Show a tqdm bar with live L0 and explained variance."""
    use_wandb: bool = False
    """Log to Weights & Biases (works with WANDB_MODE=offline; wandb is optional)."""
    wandb_project: str = "saelab"
    """W&B project name."""
    stop_at: int | None = None
    """End the run after this step (with a checkpoint) even if ``total_steps`` is larger, as
    an interruption would; a later :func:`fit` with the same ``checkpoint_dir`` resumes it.
    Splits a long run across sessions; the result is as if it had run in one go."""
    snapshot_every: int | None = None
    """Also keep light, weights-only snapshots of the SAE every this many steps (step 0, the
    initial dictionary, and the last step included) in ``<checkpoint_dir>/snapshots``, for
    studying when features emerge (:mod:`saelab.train.snapshots`). They are never pruned, and
    a resumed run writes the same ones as an uninterrupted run. Needs ``checkpoint_dir``;
    None keeps none."""
    init_b_dec_from_first_batch: bool = True
    """Start b_dec at the geometric median of the first batch (a step-0 heuristic from
    Bricken et al. 2023) so early steps learn features, not the mean."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= 1, got {getattr(self, name)}"
            for name in ("checkpoint_every", "log_every", "keep_checkpoints")
            if getattr(self, name) < 1
        ]
        if self.stop_at is not None and (self.stop_at < 1 or not self.checkpoint_dir):
            problems.append("stop_at must be >= 1 and needs a checkpoint_dir, or the stopped run could not resume")
        if self.snapshot_every is not None and (self.snapshot_every < 1 or not self.checkpoint_dir):
            problems.append("snapshot_every must be >= 1 and needs a checkpoint_dir, where the snapshots are kept")
        self.raise_problems(problems)


@dataclass
class TrainResult:
    """A finished (or resumed-and-finished) run."""

    sae: TrainableSAE[Any]
    cfg: TrainConfig
    history: pd.DataFrame
    """One row every ``log_every`` steps: step, loss, loss_<part> for each weighted loss part
    (loss_mse plus the architecture's: loss_l1, loss_l0 or loss_aux), l0, explained_variance, lr."""
    resumed_from: int | None = None
    """Step of the checkpoint the run continued from, if any."""
    steps_done: int = 0
    """Steps completed so far (``cfg.total_steps`` unless ``RunConfig.stop_at`` ended it early)."""
    final: dict[str, float] = field(default_factory=dict)
    """Metrics of the last step."""


def fit(
    cfg: TrainConfig, source: BatchSource, run: RunConfig | None = None, replicas: Replicas | None = None
) -> TrainResult:
    """Train an SAE for ``cfg.total_steps`` steps on batches from ``source``.

    With ``replicas`` (data parallelism, :mod:`saelab.distributed`) this rank trains one copy
    and ``source`` serves its share of each global batch: ``cfg.batch_size / replicas.size``
    rows (:func:`saelab.train.replicated.share_of` cuts shares from any source). The run
    equals a single-process run with the same config; only the group's leader writes
    checkpoints, snapshots, logs and a progress bar.
    """
    run = run or RunConfig()
    share = share_size(cfg, replicas)
    sae, optimizer, scheduler, start, history = _prepare(cfg, source, run, replicas)
    leader = replicas is None or replicas.is_leader
    snapshots = run_snapshot_folder(run, sae) if leader else None
    logger = WandbLogger(cfg, run) if run.use_wandb and leader else None
    batches = source(start)
    end = cfg.total_steps if run.stop_at is None else max(start, min(run.stop_at, cfg.total_steps))
    show = run.progress and leader
    bar = tqdm(total=cfg.total_steps, initial=start, desc=f"train {cfg.activation}", disable=not show)
    try:
        for step in range(start, end):
            batch = next_batch(batches, step, cfg, share).to(sae.device)
            if step == 0 and run.init_b_dec_from_first_batch:
                sae.init_b_dec(whole_batch(batch, replicas))
            maybe_snapshot(run, snapshots, step, sae)  # the weights after `step` steps
            out = train_step(sae, optimizer, batch, scheduler)
            if not torch.isfinite(out.loss):
                raise FloatingPointError(f"Loss became {out.loss.item()} at step {step}; lower lr or check the data.")
            if (step + 1) % run.log_every == 0 or step + 1 == cfg.total_steps:
                row = {"step": step + 1, **metrics(out, batch, sae), "lr": float(scheduler.get_last_lr()[0])}
                history.append(row)
                bar.set_postfix(l0=f"{row['l0']:.1f}", ev=f"{row['explained_variance']:.3f}")
                if logger:
                    logger.log(row)
            if run.checkpoint_dir and ((step + 1) % run.checkpoint_every == 0 or step + 1 == end):
                check_in_sync(sae, step + 1)
                if leader:
                    save_state(run, step + 1, sae, optimizer, scheduler, history)
            bar.update(1)
        if end == cfg.total_steps:
            maybe_snapshot(run, snapshots, end, sae)
    finally:
        bar.close()
        if logger:
            logger.finish()
    sae.replicas = None  # the trained SAE is a plain module again (encode/decode need no group)
    frame = pd.DataFrame(history)
    return TrainResult(
        sae=sae.eval(),
        cfg=cfg,
        history=frame,
        resumed_from=start or None,
        steps_done=end,
        final=frame.iloc[-1].to_dict() if len(frame) else {},
    )


def _prepare(
    cfg: TrainConfig, source: BatchSource, run: RunConfig, replicas: Replicas | None
) -> tuple[TrainableSAE[Any], torch.optim.Optimizer, Scheduler, int, list[dict[str, float]]]:
    """The SAE, optimiser and schedule, fresh or as the newest checkpoint left them, and
    the step to start from; replicas check that they agree on all of it."""
    if replicas is not None:
        replicas.agree(cfg.to_dict(), "the training config")
    torch.manual_seed(cfg.seed)
    sae = make_sae(cfg)
    sae.replicas = replicas
    optimizer = make_optimizer(sae, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    # The leader loads first: loading may move a damaged checkpoint aside.
    with replicas.leader_first() if replicas is not None else contextlib.nullcontext():
        start, history = _maybe_resume(run, sae, optimizer, scheduler)
    if replicas is not None:
        replicas.agree(start, "the step to resume from (every rank must see the same checkpoint_dir)")
    if start == 0 and cfg.normalize_activations == "expected_average_only_in":
        sae.set_input_scale(input_scale(source(0), cfg.d_in, cfg.norm_batches, replicas))
    return sae, optimizer, scheduler, start, history


def next_batch(batches: Iterator[Tensor], step: int, cfg: TrainConfig, share: int) -> Tensor:
    try:
        batch = next(batches)
    except StopIteration:
        raise ValueError(
            f"The batch source ran out at step {step} of {cfg.total_steps}; give it more tokens "
            f"({cfg.total_steps * cfg.batch_size:,} needed) or more epochs."
        ) from None
    if batch.ndim != 2 or batch.shape[1] != cfg.d_in:
        raise ValueError(f"Expected batches of shape [batch, {cfg.d_in}], got {tuple(batch.shape)}")
    if share != cfg.batch_size and batch.shape[0] != share:
        raise ValueError(
            f"Each rank's share of a global batch of {cfg.batch_size} rows is {share} rows, but the source "
            f"gave {batch.shape[0]}; serve shares (replicated.share_of or iter_batches(rank=, world_size=))."
        )
    return batch


def save_state(
    run: RunConfig,
    step: int,
    sae: TrainableSAE[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    history: list[dict[str, float]],
) -> None:
    assert run.checkpoint_dir is not None
    state = {
        "sae": sae.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng(),
        "history": list(history),
        "cfg": sae.cfg.to_dict(),
    }
    save_checkpoint(run.checkpoint_dir, step, state, keep=run.keep_checkpoints)


def run_snapshot_folder(run: RunConfig, sae: TrainableSAE[Any]) -> Path | None:
    """The run's snapshot folder (checked to hold this config's snapshots only), or None."""
    if run.snapshot_every is None or run.checkpoint_dir is None:
        return None
    folder = snapshot_folder(run.checkpoint_dir)
    check_snapshot_config(folder, sae.cfg)
    return folder


def maybe_snapshot(run: RunConfig, folder: Path | None, step: int, sae: TrainableSAE[Any]) -> None:
    if folder is not None and run.snapshot_every is not None:
        if snapshot_due(step, run.snapshot_every, sae.cfg.total_steps):
            save_snapshot(folder, step, sae)


def _maybe_resume(
    run: RunConfig, sae: TrainableSAE[Any], optimizer: torch.optim.Optimizer, scheduler: Scheduler
) -> tuple[int, list[dict[str, float]]]:
    if not (run.checkpoint_dir and run.resume):
        return 0, []
    ckpt = load_latest(run.checkpoint_dir, map_location=sae.device)
    if ckpt is None:
        return 0, []
    if ckpt.state["cfg"] != sae.cfg.to_dict():
        raise ValueError(
            f"The checkpoint in {run.checkpoint_dir} was written with a different TrainConfig; "
            "use another checkpoint_dir or delete it to start over."
        )
    sae.load_state_dict(ckpt.state["sae"])
    optimizer.load_state_dict(ckpt.state["optimizer"])
    scheduler.load_state_dict(ckpt.state["scheduler"])
    restore_rng(ckpt.state["rng"])
    log.info("Resuming from %s (step %d)", ckpt.path, ckpt.step)
    return ckpt.step, list(ckpt.state["history"])


class WandbLogger:
    """Weights & Biases, imported only when asked for (it is not a hard dependency)."""

    def __init__(self, cfg: TrainConfig, run: RunConfig, *, name: str | None = None, group: str | None = None) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError("use_wandb=True needs the `wandb` package: pip install wandb") from err
        # "create_new": a sweep keeps one live run per member in this process.
        self._run = wandb.init(project=run.wandb_project, config=cfg.to_dict(), name=name, group=group,
                               reinit="create_new")  # fmt: skip

    def log(self, row: dict[str, Any]) -> None:
        self._run.log({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))

    def finish(self) -> None:
        self._run.finish()


def checkpoint_folder(root: str | Path, cfg: TrainConfig) -> Path:
    """A per-config checkpoint folder, so runs with different settings never collide."""
    return Path(root) / f"{cfg.activation}-{cfg.hook_name}-{stable_hash(cfg.to_dict())}"
