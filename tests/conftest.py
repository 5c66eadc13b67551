"""Shared fixtures: one session-scoped real model, and small SAEs made on the spot.

Most tests use random SAEs in SAELens format, made in microseconds, which exercise exactly
the code paths the bundled suite does; tests that need real features load the bundled suite.
"""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

import saelab


@pytest.fixture(scope="session")
def model():
    """The real embedded model (SmolLM2-135M), on CPU."""
    return saelab.load_model("smollm2-135m", device="cpu")


def random_sae(
    d_in: int,
    d_sae: int,
    hook: str,
    *,
    seed: int = 0,
    model_name: str = "smollm2-135m",
    bias: float = -1.0,
    input_norm: float = 200.0,
) -> StandardSAE:
    """A ReLU SAE with random weights whose features are sparse-ish on real activations.

    Pre-activations have std ~ |x| / input_norm; SmolLM2's mid-layer residual norms are ~200
    (BOS is ~25,000), so with the default bias about one feature in six is active.
    """
    gen = torch.Generator().manual_seed(seed)
    cfg = StandardSAEConfig(
        d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook, model_name=model_name)
    )
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=gen) / input_norm)
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=gen) / d_sae**0.5)
        sae.b_enc.fill_(bias)
        sae.b_dec.zero_()
    return sae.eval()


@pytest.fixture(scope="session")
def make_sae():
    return random_sae
