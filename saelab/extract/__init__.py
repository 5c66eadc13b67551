"""From texts to SAE features: the one tokenization policy (``tokens``), padded batches
with exact masks (``batches``), activations at hook points (``hooks``), pooled and
per-token extraction (``extract``, ``per_token``) and a disk cache (``cache``).

Names are imported on first use (see ``__init__.pyi``), so importing this package is cheap.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
