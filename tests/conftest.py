"""Shared fixtures: one session-scoped real model, one tiny model, and small SAEs made on the spot.

Two tiers (docs/testing.md): ``make test`` runs everything; ``make test-fast``
(``-m "not slow"``) runs in under 3 minutes and never loads the real model. So every test that asks for the real
model (the ``model`` fixture, directly or through another fixture) is marked ``real_model``
and ``slow`` here, at collection; tests that check logic rather than SmolLM2 itself use
``tiny_model`` instead, a randomly initialised model of SmolLM2's shape (tests/_tiny_model.py).

Most tests use random SAEs in SAELens format, made in microseconds, which exercise exactly
the code paths the bundled suite does; tests that need real features load the bundled suite.
"""

from __future__ import annotations

import os

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import SAEMetadata

import saelab
from tests._tiny_model import build_tiny_model, load_smollm2_tokenizer


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_model)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def model():
    """The real embedded model (SmolLM2-135M), on CPU. Tests that use it run in the full tier only."""
    return saelab.load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer alone, for tests that count or pack tokens without a model."""
    return load_smollm2_tokenizer()


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random model with SmolLM2's architecture, layers and tokenizer, on CPU."""
    return build_tiny_model()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Run every test but the real model's, its fixtures included, on one thread, unless
    OMP_NUM_THREADS asks for another count. Their tensors are too small to share out, and on a
    busy 2-core host the hand-offs between two threads cost more than the work: measured at a
    load of 3, the training tests took 104 s on two threads and 12 s on one, and six tiny-model
    extractions 6 s of CPU instead of 0.25 s."""
    if os.environ.get("OMP_NUM_THREADS") or item.get_closest_marker("real_model"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
