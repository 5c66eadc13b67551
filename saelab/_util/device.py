"""Which torch device saelab uses by default. Kept free of heavy imports so the training
kernels can use it without importing TransformerLens (seconds)."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
