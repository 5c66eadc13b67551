"""Activation stores: a corpus's model activations at several hooks, from one model pass,
sharded fp16 on disk, reused by a cache key, resumable, and served shuffled.

* ``config``: :class:`StoreConfig`; ``pack``: documents packed into rows of tokens.
* ``build``: :func:`build_store` (reuse, resume, atomic shards); ``manifest``: its files.
* ``reader``: :class:`ActivationStore`; ``batches``: shuffled batches within a memory budget.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
