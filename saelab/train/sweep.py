"""Several SAEs trained in one pass over the data: every batch is read once and fed to each.

A sweep's members may differ in architecture, width, ``k`` or penalty, but they read the same
stream of batches, so they share ``hook_name``, ``d_in``, ``batch_size`` and ``total_steps``.
Each keeps its own optimiser, schedule, checkpoints, snapshots and W&B run, in a folder of its
own under the sweep's ``checkpoint_dir`` (``<checkpoint_dir>/<member name>``), next to a
``sweep.json`` that lists the members. Each member starts from ``torch.manual_seed(cfg.seed)``
as :func:`saelab.train.trainer.fit` does, so a member equals the same config trained alone.

Resume restarts the whole sweep from its last *consistent* step, the newest step every member
has a checkpoint of: a run killed between two members' saves, or a member whose newest
checkpoint is damaged (moved aside as :func:`saelab.train.checkpoint.load_latest` does), sends
the others back to that step too.

Under torchrun (``replicas``) every rank trains every member on its share of each batch, and
each member's gradients are averaged over the ranks. The alternative, one group of ranks per
member, would read each batch once per group and idle ranks whenever members outnumber them;
data parallelism keeps "one read per batch" and equals the single-process sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from saelab._util.atomic import atomic_write_text
from saelab._util.keys import stable_hash
from saelab.train.base import TrainableSAE, share_scratch
from saelab.train.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, load_latest, restore_rng
from saelab.train.config import TrainConfig
from saelab.train.optim import make_optimizer, make_scheduler, train_step
from saelab.train.registry import make_sae
from saelab.train.replicated import check_in_sync, input_scale, metrics, share_size, whole_batch
from saelab.train.trainer import (
    BatchSource,
    RunConfig,
    TrainResult,
    WandbLogger,
    maybe_snapshot,
    next_batch,
    run_snapshot_folder,
    save_state,
)

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

log = logging.getLogger(__name__)

SHARED = ("hook_name", "d_in", "batch_size", "total_steps")
"""Config fields every member of a sweep must share (they read the same batches)."""


def member_name(cfg: TrainConfig) -> str:
    """A readable, unique-per-config folder name: architecture, width, sparsity, config hash."""
    sparsity = next((f"{f}{getattr(cfg, f):g}" for f in ("k", "l1_coefficient", "l0_coefficient")
                     if hasattr(cfg, f)), "")  # fmt: skip
    return f"{cfg.activation}-{cfg.d_sae}-{sparsity}-{stable_hash(cfg.to_dict())}"


def sweep_folder(root: str | Path, configs: Sequence[TrainConfig]) -> Path:
    """A per-sweep checkpoint folder under ``root``, so sweeps of other members never collide
    (a finished sweep found there is loaded, not trained again)."""
    check_sweep(configs)
    return Path(root) / f"sweep-{configs[0].hook_name}-{stable_hash([c.to_dict() for c in configs])}"


def check_sweep(configs: Sequence[TrainConfig]) -> list[str]:
    """The members' names; a clear error for an empty sweep, a repeated member, or members
    that could not share batches."""
    if not configs:
        raise ValueError("The sweep is empty; give at least one TrainConfig")
    for name in SHARED:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise ValueError(f"Sweep members must share {name} (they read the same batches); got {sorted(values)}")
    names = [member_name(c) for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"The sweep repeats a member (same config twice): {repeated}")
    return names


@dataclass
class SweepResult:
    """Every member's :class:`TrainResult`, by member name, in the order given."""

    members: dict[str, TrainResult]
    resumed_from: int | None = None
    steps_done: int = 0
    seconds: float = 0.0
    """Wall time of the training loop (not of setup or resume)."""

    @property
    def results(self) -> list[TrainResult]:
        return list(self.members.values())


@dataclass
class _Member:
    """One member's live training state."""

    name: str
    cfg: TrainConfig
    sae: TrainableSAE[Any]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    run: RunConfig
    """The sweep's RunConfig with this member's checkpoint folder."""
    history: list[dict[str, float]] = field(default_factory=list)
    snapshots: Path | None = None
    logger: WandbLogger | None = None


def fit_sweep(
    configs: Sequence[TrainConfig], source: BatchSource, run: RunConfig | None = None,
    replicas: Replicas | None = None,
) -> SweepResult:  # fmt: skip
    """Train every config on the same batches of ``source``, each batch read once.

    ``run.checkpoint_dir`` is the sweep's folder (each member checkpoints in a subfolder);
    ``run.stop_at`` stops the whole sweep. See the module docstring for resume and torchrun.
    """
    run = run or RunConfig()
    names = check_sweep(configs)
    cfg0 = configs[0]
    share = share_size(cfg0, replicas)
    leader = replicas is None or replicas.is_leader
    members = [_new_member(name, cfg, run, replicas) for name, cfg in zip(names, configs, strict=True)]
    share_scratch([m.sae for m in members])  # stepped in turn: one pre-activation buffer per shape
    if run.checkpoint_dir:
        _check_manifest(Path(run.checkpoint_dir), names, configs, write=leader)
    with replicas.leader_first() if replicas is not None else contextlib.nullcontext():
        start = _resume(members) if run.checkpoint_dir and run.resume else 0
    if replicas is not None:
        replicas.agree(start, "the sweep's step to resume from (every rank must see the same checkpoint_dir)")
    if start == 0:
        _set_input_scales(members, source, replicas)
    for m in members:
        m.snapshots = run_snapshot_folder(m.run, m.sae) if leader else None
        if run.use_wandb and leader:
            m.logger = WandbLogger(m.cfg, run, name=m.name, group=Path(run.checkpoint_dir or "sweep").name)
    end = cfg0.total_steps if run.stop_at is None else max(start, min(run.stop_at, cfg0.total_steps))
    bar = tqdm(total=cfg0.total_steps, initial=start, desc=f"sweep of {len(members)} SAEs",
               disable=not (run.progress and leader))  # fmt: skip
    began = time.perf_counter()
    try:
        batches = source(start)
        for step in range(start, end):
            batch = next_batch(batches, step, cfg0, share).to(members[0].sae.device)
            for m in members:
                _step(m, batch, step, replicas)
            if (step + 1) % run.log_every == 0 or step + 1 == cfg0.total_steps:
                bar.set_postfix(l0="/".join(f"{m.history[-1]['l0']:.0f}" for m in members))
            if run.checkpoint_dir and ((step + 1) % run.checkpoint_every == 0 or step + 1 == end):
                for m in members:
                    check_in_sync(m.sae, step + 1)
                    if leader:
                        save_state(m.run, step + 1, m.sae, m.optimizer, m.scheduler, m.history)
            bar.update(1)
        if end == cfg0.total_steps:
            for m in members:
                maybe_snapshot(m.run, m.snapshots, end, m.sae)
    finally:
        bar.close()
        for m in members:
            if m.logger:
                m.logger.finish()
    seconds = time.perf_counter() - began
    return SweepResult({m.name: _result(m, start, end) for m in members}, start or None, end, seconds)


def _new_member(name: str, cfg: TrainConfig, run: RunConfig, replicas: Replicas | None) -> _Member:
    torch.manual_seed(cfg.seed)  # as fit(): a member starts where the same config alone would
    sae = make_sae(cfg)
    sae.replicas = replicas
    optimizer = make_optimizer(sae, cfg)
    folder = str(Path(run.checkpoint_dir) / name) if run.checkpoint_dir else None
    member_run = dataclasses.replace(run, checkpoint_dir=folder)
    return _Member(name, cfg, sae, optimizer, make_scheduler(optimizer, cfg), member_run)


def _step(m: _Member, batch: torch.Tensor, step: int, replicas: Replicas | None) -> None:
    if step == 0 and m.run.init_b_dec_from_first_batch:
        m.sae.init_b_dec(whole_batch(batch, replicas))
    maybe_snapshot(m.run, m.snapshots, step, m.sae)
    out = train_step(m.sae, m.optimizer, batch, m.scheduler)
    if not torch.isfinite(out.loss):
        raise FloatingPointError(f"{m.name}: loss became {out.loss.item()} at step {step}; lower its lr.")
    if (step + 1) % m.run.log_every == 0 or step + 1 == m.cfg.total_steps:
        row = {"step": step + 1, **metrics(out, batch, m.sae), "lr": float(m.scheduler.get_last_lr()[0])}
        m.history.append(row)
        if m.logger:
            m.logger.log(row)


def _set_input_scales(members: list[_Member], source: BatchSource, replicas: Replicas | None) -> None:
    """Each member that normalises its inputs measures the scale once per distinct setting."""
    scales: dict[int, float] = {}
    for m in members:
        if m.cfg.normalize_activations == "expected_average_only_in":
            n = m.cfg.norm_batches
            if n not in scales:
                scales[n] = input_scale(source(0), m.cfg.d_in, n, replicas)
            m.sae.set_input_scale(scales[n])


def _result(m: _Member, start: int, end: int) -> TrainResult:
    m.sae.replicas = None
    frame = pd.DataFrame(m.history)
    final = frame.iloc[-1].to_dict() if len(frame) else {}
    return TrainResult(m.sae.eval(), m.cfg, frame, start or None, end, final)


def _check_manifest(folder: Path, names: list[str], configs: Sequence[TrainConfig], *, write: bool) -> None:
    """``sweep.json`` lists the members; resuming into a folder of another sweep is refused."""
    path = folder / "sweep.json"
    manifest = {"members": names, "configs": [c.to_dict() for c in configs]}
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("members") != names:
            raise ValueError(
                f"{folder} holds a sweep of other members ({old.get('members')}); this one is {names}. "
                "Use another checkpoint_dir, or delete that one to start over."
            )
    elif write:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(manifest, indent=1))


def _resume(members: list[_Member]) -> int:
    """Load every member at the newest step they all have; 0 when some member has none."""
    latest: list[Checkpoint | None] = [load_latest(m.run.checkpoint_dir or "", map_location=m.sae.device)
                                       for m in members]  # fmt: skip
    if all(c is None for c in latest):
        return 0
    if any(c is None for c in latest):
        _warn("some members have no checkpoint; the whole sweep starts over")
        return 0
    step = min(c.step for c in latest if c is not None)
    loaded = []
    for m, ckpt in zip(members, latest, strict=True):
        assert ckpt is not None
        if ckpt.step != step:
            try:
                ckpt = load_checkpoint(checkpoint_path(m.run.checkpoint_dir or "", step), m.sae.device)
            except Exception as err:  # pruned or damaged: no consistent step to go back to
                _warn(f"{m.name} has no loadable checkpoint of step {step} ({type(err).__name__}); starting over")
                return 0
        loaded.append(ckpt)
    for m, ckpt in zip(members, loaded, strict=True):
        _load(m, ckpt)
    restore_rng(loaded[0].state["rng"])  # every member saved the same RNG state at this step
    log.info("Resuming the sweep of %d SAEs from step %d", len(members), step)
    return step


def _load(m: _Member, ckpt: Checkpoint) -> None:
    if ckpt.state["cfg"] != m.cfg.to_dict():
        raise ValueError(f"The checkpoint {ckpt.path} was written with a different config than member {m.name}'s")
    m.sae.load_state_dict(ckpt.state["sae"])
    m.optimizer.load_state_dict(ckpt.state["optimizer"])
    m.scheduler.load_state_dict(ckpt.state["scheduler"])
    m.history = list(ckpt.state["history"])


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
