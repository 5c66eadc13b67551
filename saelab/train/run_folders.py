"""The folder a run keeps its checkpoints and snapshots in, and starting a run over.

:func:`~saelab.train.fit` resumes from the newest checkpoint in ``RunConfig.checkpoint_dir``,
and a finished run resumes as finished: it trains no step and writes nothing new. So a run
that must write something its folder lacks (snapshots it was not asked to keep before), or
a demonstration that must start from step 0, needs the old run removed first.

    folder = run_folder("outputs/checkpoints", cfg, snapshots=True)
    fit(cfg, source, RunConfig(checkpoint_dir=str(folder), snapshot_every=100))
"""

from __future__ import annotations

import shutil
from pathlib import Path

from saelab.train.checkpoint import list_checkpoints
from saelab.train.config import TrainConfig
from saelab.train.snapshots import SNAPSHOT_DIRNAME, list_snapshots
from saelab.train.trainer import checkpoint_folder

# What a run writes: checkpoints (and their temporary or set-aside copies) at the top,
# snapshots in their subfolder. Anything else in a folder is not ours to delete.
_CHECKPOINT_PREFIX, _SNAPSHOT_PREFIX = "ckpt-", "snapshot-"


def run_folder(root: str | Path, cfg: TrainConfig, *, snapshots: bool = False) -> Path:
    """``cfg``'s own checkpoint folder under ``root`` (one per config, so runs with different
    settings never share one). With ``snapshots=True``, a run found there with checkpoints
    but no snapshots (trained without ``snapshot_every``) is removed, so the next
    :func:`~saelab.train.fit` trains it again and keeps them; a run that has them is kept
    and resumed."""
    folder = checkpoint_folder(root, cfg)
    if snapshots and list_checkpoints(folder) and not list_snapshots(folder):
        clear_run(folder)
    return folder


def clear_run(folder: str | Path) -> Path:
    """Remove the run in ``folder`` (its checkpoints and snapshots) so the next
    :func:`~saelab.train.fit` there starts from step 0; returns the folder, which is then
    absent. A folder holding anything a run does not write is left alone, with an error."""
    folder = Path(folder)
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a run's checkpoint folder")
    foreign = [p for p in folder.iterdir() if not _written_by_a_run(p)]
    if foreign:
        names = ", ".join(sorted(p.name for p in foreign)[:5])
        raise ValueError(f"{folder} holds files a training run does not write ({names}); not removing it. "
                         "Pass the run's own checkpoint folder, or delete it yourself.")
    shutil.rmtree(folder)
    return folder


def _written_by_a_run(path: Path) -> bool:
    if path.is_file():
        return path.name.startswith(_CHECKPOINT_PREFIX)
    if path.is_dir() and path.name == SNAPSHOT_DIRNAME:
        return all(p.is_file() and p.name.startswith(_SNAPSHOT_PREFIX) for p in path.iterdir())
    return False
