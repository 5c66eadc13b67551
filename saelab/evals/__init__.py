"""Evaluate an SAE against its model: sparsity and reconstruction metrics on tensors
(``metrics``), exact streaming sums (``accumulators``), the SAE spliced into the model for CE
loss and KL (``ce_loss``), and the harness that streams token batches and reports one
:class:`EvalResult` (``harness``).

Works for any ``sae_lens.SAE`` (a pretrained release or one saelab trained) and a
TransformerLens ``HookedTransformer``. Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
