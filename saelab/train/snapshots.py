"""Light snapshots of the dictionary during training, for studying when features emerge.

A checkpoint (:mod:`saelab.train.checkpoint`) holds everything a resume needs, optimizer
state included, and only the newest few are kept. A snapshot holds the SAE's weights and its
config only (about a third of a checkpoint's size for Adam), and none is ever pruned: with
``RunConfig(snapshot_every=N)`` the trainer writes ``<checkpoint_dir>/snapshots/snapshot-<step>.pt``
at every step that is a multiple of N (step 0, the initial dictionary, included) and at the
last step. The snapshot of step s holds the weights after s optimizer steps, so a resumed run
writes the same snapshots, at the same steps, as an uninterrupted one.

Files are written as checkpoints are (a temporary name, flushed, renamed) and loaded with
``torch.load(weights_only=True)``, which unpickles nothing but tensors and plain types.

    snapshots = load_snapshots(run.checkpoint_dir)       # sorted by step
    sae_lens_saes = {f"step {s.step}": s.to_sae_lens() for s in snapshots}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from saelab._util.atomic import atomic_torch_save
from saelab.train.base import TrainableSAE
from saelab.train.config import TrainConfig
from saelab.train.export import to_sae_lens
from saelab.train.registry import make_sae

if TYPE_CHECKING:
    from sae_lens import SAE

SNAPSHOT_DIRNAME = "snapshots"
"""The subfolder of a run's ``checkpoint_dir`` that holds its snapshots."""

_NAME = re.compile(r"^snapshot-(\d{9})\.pt$")


@dataclass(frozen=True)
class Snapshot:
    """The dictionary of a run after ``step`` optimizer steps."""

    step: int
    path: Path
    sae: TrainableSAE[Any]
    """The SAE as it was at ``step`` (eval mode), on the device it was loaded to."""

    @property
    def W_dec(self) -> Float[Tensor, "d_sae d_in"]:
        """Its decoder, so a snapshot can be passed wherever an SAE's decoder is read
        (``saelab.evolution.match_features``)."""
        return self.sae.W_dec

    def to_sae_lens(self, *, input_scale: float = 1.0, device: str | torch.device | None = None) -> SAE:
        """The snapshot as an in-memory ``sae_lens.SAE`` reading raw activations, as the
        exported final SAE does (:func:`saelab.train.export.to_sae_lens`)."""
        return to_sae_lens(self.sae, input_scale=input_scale, device=device)


def snapshot_folder(folder: str | Path) -> Path:
    """Where the snapshots of the run in ``folder`` live: ``folder/snapshots``, or ``folder``
    itself when it is a snapshot folder already."""
    folder = Path(folder)
    return folder if folder.name == SNAPSHOT_DIRNAME else folder / SNAPSHOT_DIRNAME


def snapshot_path(folder: str | Path, step: int) -> Path:
    return snapshot_folder(folder) / f"snapshot-{step:09d}.pt"


def snapshot_due(step: int, every: int, total_steps: int) -> bool:
    """Whether the weights after ``step`` steps are snapshotted: every ``every`` steps from 0,
    and the last step."""
    return step % every == 0 or step == total_steps


def save_snapshot(folder: str | Path, step: int, sae: TrainableSAE[Any]) -> Path:
    """Write the weights and config of ``sae`` as the snapshot of ``step`` (atomically:
    temporary file, fsync, rename), replacing any earlier file of that step."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    final = snapshot_path(folder, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "sae": {k: v.detach().cpu() for k, v in sae.state_dict().items()},
             "cfg": sae.cfg.to_dict()}  # fmt: skip
    atomic_torch_save(final, state)
    return final


def list_snapshots(folder: str | Path) -> list[Path]:
    """Snapshot files of a run, by step (``folder``: its ``checkpoint_dir`` or its snapshot
    folder); an empty list when there are none. Temporary files never match."""
    folder = snapshot_folder(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def load_snapshot(path: str | Path, device: str | torch.device = "cpu") -> Snapshot:
    """One snapshot file, loaded safely, checked against its name, as a trainable SAE."""
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    match = _NAME.match(path.name)
    if not isinstance(state, dict) or match is None or state.get("step") != int(match.group(1)):
        raise ValueError(f"{path} does not hold the snapshot of the step its name says")
    cfg = TrainConfig.from_dict(state["cfg"])
    sae = make_sae(cfg, device=device)
    sae.load_state_dict(state["sae"])
    return Snapshot(step=int(state["step"]), path=path, sae=sae.eval())


def load_snapshots(folder: str | Path, *, device: str | torch.device = "cpu") -> list[Snapshot]:
    """Every snapshot of a run, sorted by step (``folder``: the run's ``checkpoint_dir`` or
    its snapshot folder). All must come from one training config."""
    paths = list_snapshots(folder)
    if not paths:
        raise ValueError(
            f"No snapshots in {snapshot_folder(folder)}; train with RunConfig(checkpoint_dir=..., "
            "snapshot_every=N) to keep the dictionary every N steps (a run finished without it has none)."
        )
    snapshots = [load_snapshot(p, device) for p in paths]
    configs = {s.step: s.sae.cfg for s in snapshots}
    if len({c.to_json() for c in configs.values()}) > 1:
        raise ValueError(f"The snapshots in {snapshot_folder(folder)} come from different training configs; "
                         "keep one run per folder (checkpoint_folder(root, cfg) gives each config its own).")
    return snapshots


def check_snapshot_config(folder: str | Path, cfg: TrainConfig) -> None:
    """Refuse to add snapshots of ``cfg`` to a folder that holds another config's (the newest
    one is read), so one folder never mixes two runs."""
    paths = list_snapshots(folder)
    if not paths:
        return
    state = torch.load(paths[-1], map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("cfg") != cfg.to_dict():
        raise ValueError(
            f"The snapshots in {snapshot_folder(folder)} were written with a different TrainConfig; "
            "use another checkpoint_dir or delete them to start over."
        )
