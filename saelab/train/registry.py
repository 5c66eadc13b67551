"""The SAE architectures saelab trains, by name: one file each, found here.

Adding an architecture means writing its file (a config subclass, a ``TrainableSAE``
subclass with its SAELens export, a calibration entry, and a module-level ``ARCHITECTURE``)
and adding one line to :data:`ARCHITECTURES`. Files are imported on first use, so naming
the choices (a command line's ``--help``) costs nothing.

    cfg = config_for("topk", d_in=576, d_sae=4608, k=32)
    sae = make_sae(cfg)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from saelab.train.base import TrainableSAE
    from saelab.train.config import TrainConfig

ARCHITECTURES: dict[str, str] = {
    "relu": "saelab.train.relu",
    "jumprelu": "saelab.train.jumprelu",
    "topk": "saelab.train.topk",
    "batchtopk": "saelab.train.batchtopk",
    "matryoshka_batchtopk": "saelab.train.matryoshka",
}
"""Architecture name -> the module that defines it (and its ``ARCHITECTURE``)."""


@dataclass(frozen=True)
class Calibration:
    """How sparsity calibration reaches a target L0 for one architecture."""

    field: str
    """The config field calibration sets or searches."""
    method: Literal["set_to_target", "bisect"]
    """``set_to_target``: the field is the L0 itself (TopK's k), set to the rounded target.
    ``bisect``: a penalty coefficient, searched in log space with short training runs (L0
    falls as it grows)."""
    stall_hint: str = ""
    """What to suspect when L0 stops responding to the field (logged with the warning)."""


@dataclass(frozen=True)
class Architecture:
    """One trainable SAE architecture: its config, its training module, its calibration."""

    name: str
    """Registry name, equal to ``config.activation``."""
    config: type[TrainConfig]
    """Its config class (a ``TrainConfig`` subclass)."""
    sae: type[TrainableSAE[Any]]
    """Its training module (a ``TrainableSAE`` subclass), built as ``sae(cfg, device)``."""
    calibration: Calibration
    """Which config field sets its sparsity."""


def architecture_names() -> tuple[str, ...]:
    """Every registered architecture, without importing any of them."""
    return tuple(ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """The architecture registered as ``name`` (its file is imported now)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown SAE architecture {name!r}; valid: {list(ARCHITECTURES)}")
    architecture = importlib.import_module(ARCHITECTURES[name]).ARCHITECTURE
    if architecture.name != name or architecture.config.activation != name:
        raise RuntimeError(f"{ARCHITECTURES[name]} defines {architecture.name!r}, registered as {name!r}")
    return architecture


def config_for(activation: str, **fields: Any) -> TrainConfig:
    """The config of architecture ``activation`` with ``fields`` set (the rest default).
    A field that architecture does not have is an error that lists the valid ones."""
    return get_architecture(activation).config.from_dict(fields)


def make_sae(cfg: TrainConfig, device: str | torch.device | None = None) -> TrainableSAE[Any]:
    """A freshly initialised training module for ``cfg`` (on ``device``, else ``cfg.device``)."""
    return get_architecture(cfg.activation).sae(cfg, device)
