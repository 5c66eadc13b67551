"""Scorers: one number per (feature, explanation) on the held-out scoring split."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
