"""Autograd kernels of the training step, each fast kernel beside its plain reference.

* ``pairs``: :class:`ActivePairs`, the (token, latent) pairs a sparse kernel touches.
* ``sparse``: pre-activations and decoding at those pairs only (``selected_pre_acts``,
  ``decode_pairs``, ``sparse_decode``), each with a dense ``*_reference``.
* ``select``: a batch's largest pre-activations (BatchTopK), two-stage and plain.
* ``ste``: JumpReLU's straight-through estimators (``jumprelu``, ``step``).
* ``dense``: mixed-dtype matmuls, firing counts, ReLU's dense fast step.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
