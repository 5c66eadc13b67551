"""Automated interpretability: explain features in words and score the explanations against
held-out activations, beside controls (shuffled explanations, all-negative answers).

* :func:`collect_examples` gathers each feature's contexts (:class:`ExampleSet`), split for
  explaining and scoring; :func:`run_autointerp` explains and scores them.
* ``explainers``, ``scorers``, ``backends`` (the embedded model, or any OpenAI-compatible endpoint).

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
