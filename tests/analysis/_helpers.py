"""What several analysis test files share: the planted-truth synthetic layout, a brute-force
AUROC reference, and the texts and hook of the model tests."""

from __future__ import annotations

import numpy as np

# specialists() end to end on synthetic data with planted truth (the `synthetic` fixture).
N_CAT, PER_CAT, D_SAE = 7, 20, 300
PLANTED = {c: 10 + 37 * c for c in range(N_CAT)}  # category -> its specialist feature
CONSTANT = 299

# The model tests: a small random SAE at an early hook, on a few varied texts.
HOOK = "blocks.4.hook_resid_pre"
TEXTS = [
    "def add(a, b):\n    return a + b",
    "The cat sat on the mat and looked out of the window.",
    "https://example.com/search?q=sparse+autoencoders",
    "∫_0^1 x^2 dx = 1/3",
    "¿Dónde está la biblioteca? 🤔",
    "I think I'll finish this tomorrow, honestly.",
    "Hereinafter the party of the first part shall be referred to as the Licensor.",
]


def brute_force_auroc(x: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """P(a_in > a_out) + 0.5 P(a_in = a_out) over every (in, out) pair, per feature."""
    a, b = x[inside][:, None, :], x[~inside][None, :, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(0, 1))
