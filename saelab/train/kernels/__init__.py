"""Autograd kernels of the training step, each fast kernel beside its plain reference.

* ``pairs``: :class:`ActivePairs`, the (token, latent) pairs a sparse kernel touches.
* ``sparse``: pre-activations and decoding at those pairs only (``selected_pre_acts``,
  ``decode_pairs``, ``sparse_decode``), each with a dense ``*_reference``.
* ``select``: a batch's largest pre-activations (BatchTopK), two-stage and plain.
* ``ste``: JumpReLU's straight-through estimators (``jumprelu``, ``step``).
* ``dense``: mixed-dtype matmuls, firing counts, ReLU's dense fast step.

They serve the architectures in ``saelab.train`` and export nothing of their own: import
each from its module (``from saelab.train.kernels.sparse import decode_pairs``).
"""
