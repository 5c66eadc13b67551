"""Figures, token highlighting and interactive explorers: precomputed data in; ``go.Figure``,
HTML or widgets out. Nothing else in saelab imports this package.

* ``style``: colours, labels, checks and the shared layout; ``export``: PNG/SVG offline.
* Plots by subject: ``features``, ``sparsity``, ``layers``, ``training``, ``charts``.
* ``highlight`` (+ ``highlight.css``): tokens shaded by activation, as standalone HTML.
* ``explorer_data``, ``explorer_view`` (a view's figures and HTML), ``feature_explorer``,
  ``text_explorer``: the ipywidgets explorers.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
