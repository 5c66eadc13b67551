"""What a feature *does*: edit the model through an SAE and measure the effect.

``splice`` installs an SAE at its hook with an edit while keeping the reconstruction error, so
no edit means the clean model; ``steering`` adds or clamps features (strengths in units of a
feature's typical maximum, from ``feature_stats``); ``generation`` samples baseline and
steered text with one seed; ``sweep`` scores steering on held-out prompts (concept probe,
fluency, prompt relevance); ``ablation`` and ``effects`` zero or mean-ablate features and
measure the change in loss and logits; ``attribution`` and ``circuits`` estimate those
effects from gradients, in one backward pass, and link features across hooks.
Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
