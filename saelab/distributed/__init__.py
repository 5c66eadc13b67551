"""Run across processes and GPUs with PyTorch's own ``torch.distributed``, launched by ``torchrun``.

* ``world``: joining the job (:func:`join`), who is rank 0, timeouts and clear errors for an
  incomplete launch.
* ``replicas``: the ranks that hold copies of one SAE and the collectives that keep them
  identical (gradient averaging, summed statistics, agreement checks), and
  :func:`split_world` for training several SAEs at once, one per group of ranks.

Training uses them through ``saelab.train.fit(..., replicas=...)``, the activation store
through ``build_store(..., world=...)``; ``torchrun -m saelab.train`` does both.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
