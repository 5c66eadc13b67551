"""Explainers: a feature's explain-split contexts in, a short explanation out."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
