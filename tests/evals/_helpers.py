"""What several evals test files share: the model setup (hook, texts, length), an SAE
that reconstructs exactly, and a stub activation store for SAELens's eval functions.

The stub store only answers ``get_batch_tokens``, which is all SAELens's eval helpers ask of
it, so they run offline. SAELens excludes BOS by token id (``ignore_tokens``); our tokens hold
the BOS id only at position 0, so that is the same as our positional ``exclude_bos``.
"""

from __future__ import annotations

import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

HOOK = "blocks.2.hook_resid_pre"
N_POS = 16
TEXTS = [
    "The committee met every Tuesday, but as the project grew the meetings moved to a larger "
    "room, then to a hall, and finally to an online call with hundreds of participants.",
    "import numpy as np\n\ndef softmax(x, axis=-1):\n    z = x - x.max(axis=axis, keepdims=True)\n"
    "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)\n",
]


class StubStore:
    """The one method SAELens's eval helpers use from an ActivationsStore."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def get_batch_tokens(self, n: int) -> torch.Tensor:
        assert n == self.tokens.shape[0]
        return self.tokens


def identity_sae(d_in: int, hook: str) -> StandardSAE:
    """A real SAELens SAE that reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, metadata=SAEMetadata(hook_name=hook)))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()
