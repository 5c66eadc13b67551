"""Two models compared through their SAE suites.

* ``spans``: the two tokenizations of the same texts aligned on word spans, features max-pooled per span.
* ``matching``: every hook of one model matched against every hook of the other by activation
  correlation on those spans, the good-match threshold from the shuffled-span null.
* ``svcca``: SVCCA of matched features' decoder directions beside random pairings (Lan et al. 2024).
* ``specialists``: each category's best specialist per hook, lined up on relative depth.
* ``explanations``: LLM-free explanation scores of a seeded feature sample per suite, with shuffled controls.
* ``conclusions``: sentences computed from those numbers, and the confounds.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
