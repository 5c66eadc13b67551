"""Train SAEs: one file per architecture and a registry of them, the sparse kernels, the
optimiser and LR schedule, the training loop with safe checkpoints, calibration, and export
to SAELens disk format.

    from saelab.train import config_for, fit, RunConfig, save_sae
    cfg = config_for("topk", d_in=576, d_sae=4608, k=32)   # or TopKConfig(d_in=576, ...)
    result = fit(cfg, source, RunConfig(checkpoint_dir="ckpt"))   # source(start) -> [batch, d_in] batches
    save_sae(result.sae, "my_sae")                          # sae_lens.SAE.load_from_disk("my_sae") reads it

* ``config``: :class:`TrainConfig`, the fields every architecture shares.
* ``relu``, ``jumprelu``, ``topk``, ``batchtopk``, ``matryoshka``: one architecture each (config
  subclass, training module, SAELens export, calibration entry); ``registry`` finds them by name.
* ``base``: :class:`TrainableSAE`, the module they share; ``kernels/``: autograd kernels.
* ``optim``, ``trainer``, ``checkpoint``, ``calibrate``, ``export``, ``pipeline``:
  training around them. ``python -m saelab.train`` is the command line.
* ``sweep`` (with ``sweep_spec``, ``sweep_eval``, ``sweep_cli``): several SAEs in one pass over
  the data, evaluated together; ``thresholds``: exact-L0 threshold adjustment after training.

Names are imported on first use (see ``__init__.pyi``), so a command line parsing its
arguments stays cheap.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
