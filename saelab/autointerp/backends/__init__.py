"""Language models behind one interface: the embedded model, an OpenAI-compatible endpoint,
and a local server that serves the embedded model over HTTP."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
