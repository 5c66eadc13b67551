"""Analyses of SAE features over texts: rankings, category specialists and their statistics,
co-activation, layer comparison, top-activating examples and one feature at a glance.

Most functions take pooled activations ``[n_texts, d_sae]`` (torch or numpy; see
:func:`saelab.extract_features`) and return a tidy ``pandas.DataFrame``, best first, with a
1-based ``rank`` and the integer ``feature`` id. The statistics (``rankings``, ``significance``,
``specialists``, ``coactivation``, ``layers``) need numpy, scipy and pandas only; the
token-level modules (``max_activating``, ``feature``) read the model.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
