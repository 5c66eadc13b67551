"""Train SAEs: the typed configuration, the kernels (ReLU+L1, JumpReLU+L0, TopK+AuxK), the
optimiser and LR schedule, and export to SAELens disk format.

    from saelab.train import TrainConfig, TrainableSAE, make_optimizer, train_step, save_sae
    cfg = TrainConfig(activation="topk", d_in=576, d_sae=4608, k=32)
    sae = TrainableSAE(cfg)
    opt = make_optimizer(sae)
    for batch in batches:                 # [batch, d_in] activations
        out = train_step(sae, opt, batch)  # out.loss, out.losses, out.l0, out.explained_variance
    save_sae(sae, "my_sae")               # sae_lens.SAE.load_from_disk("my_sae") reads it
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names -> defining module, imported on first use so `import saelab.train` (e.g. a
# command line parsing its arguments) stays cheap.
_EXPORTS = {
    "TrainConfig": "saelab.train.config",
    "TrainableSAE": "saelab.train.kernels",
    "TrainStepOutput": "saelab.train.kernels",
    "geometric_median": "saelab.train.kernels",
    "sparse_decode": "saelab.train.kernels",
    "lr_lambda": "saelab.train.optim",
    "make_optimizer": "saelab.train.optim",
    "make_scheduler": "saelab.train.optim",
    "train_step": "saelab.train.optim",
    "save_sae": "saelab.train.export",
    "to_sae_lens": "saelab.train.export",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from saelab.train.config import TrainConfig
    from saelab.train.export import save_sae, to_sae_lens
    from saelab.train.kernels import TrainableSAE, TrainStepOutput, geometric_median, sparse_decode
    from saelab.train.optim import lr_lambda, make_optimizer, make_scheduler, train_step


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'saelab.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
