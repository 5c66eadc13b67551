"""Text corpora for activation stores: the offline mix (no network), balanced across local
sources to a token budget, or a streamed Hugging Face dataset online.

* ``config``: :class:`CorpusConfig` and :class:`Document`.
* ``mix``: building the offline mix (shares, balancing, provenance, fingerprint).
* ``filters``: junk filtering and chunking; ``counting``: token counts.
* ``sources/``: one file per source (standard library, docstrings, package docs, fortunes,
  the labelled dataset, model-written samples, Hugging Face).

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
