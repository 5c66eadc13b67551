"""What several extract test files (and tests/test_lessons.py) share: the texts and hooks of
the model tests, and a hand-made PerTokenFeatures with known values."""

from __future__ import annotations

import torch

from saelab.extract import PerTokenFeatures

# Single-SAE extraction at a deep hook.
HOOK = "blocks.20.hook_resid_pre"

# A short text batched with much longer ones: padding dominates its batch.
SHORT = "Hi!"
LONG_TEXTS = [
    "In the beginning the committee met every Tuesday, but as the project grew the meetings "
    "moved to a larger room, then to a hall, and finally to an online call with hundreds of "
    "participants who rarely turned on their cameras. " * 4,
    "import numpy as np\n\ndef softmax(x, axis=-1):\n    z = x - x.max(axis=axis, keepdims=True)\n"
    "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)\n" * 3,
    "∑_{k=1}^{n} k^2 = n(n+1)(2n+1)/6, and ∫_0^1 x^2 dx = 1/3; hence the mean of k^2 grows like n^2/3.",
]
TEXTS = [SHORT, *LONG_TEXTS, "¿Dónde está la biblioteca? 🤔 #lost"]

# Several SAEs from one model pass; MULTI_TEXTS mixes registers and lengths.
HOOKS = ("blocks.3.hook_resid_pre", "blocks.6.hook_resid_pre", "blocks.5.hook_mlp_out")
MULTI_TEXTS = [
    "Hi!",
    "import numpy as np\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n" * 3,
    "Le comité se réunira mardi prochain à dix heures pour examiner le budget.",
    "lol that was AMAZING 🔥🔥 #blessed @someone",
    "∑_{k=1}^{n} k = n(n+1)/2",
]


def hand_made_per_token() -> PerTokenFeatures:
    """Two texts (2 and 3 tokens), d_sae=4; feature 2 fires on text0/tok1 (5.0) and text1/tok2 (1.0)."""
    dense = [
        torch.tensor([[1.0, 0, 0, 0], [0, 0, 5.0, 0]]),
        torch.tensor([[0, 0, 0, 2.0], [0, 0, 0, 0], [0, 3.0, 1.0, 0]]),
    ]
    rows = torch.cat(dense)
    r, c = rows.nonzero(as_tuple=True)
    return PerTokenFeatures(
        tokens=[["Hi", " there"], ["x", " =", " 1"]],
        token_ids=[[1, 2], [3, 4, 5]],
        d_sae=4,
        row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(r, minlength=5), 0)]),
        feature_idx=c,
        values=rows[r, c],
        text_row_start=torch.tensor([0, 2, 5]),
    )
