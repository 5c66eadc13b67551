"""saelab.evals.accumulators: streamed reconstruction statistics equal one-shot metrics
whatever the batching, and the typical explained variance leaves out massive activations."""

from __future__ import annotations

import pytest
import torch

from saelab import evals
from saelab.evals.accumulators import ReconstructionStats


def test_streaming_stats_equal_one_shot_whatever_the_batching():
    gen = torch.Generator().manual_seed(0)
    # A large common offset, like the residual stream's, to exercise the variance update.
    x = torch.randn(50, 8, generator=gen) + 300.0
    x_hat = x + 0.5 * torch.randn(50, 8, generator=gen)
    feats = torch.relu(torch.randn(50, 16, generator=gen))
    stats = ReconstructionStats(d_sae=16)
    for part in (slice(0, 7), slice(7, 8), slice(8, 50)):
        stats.add(x[part], feats[part], x_hat[part])
    assert stats.explained_variance == pytest.approx(evals.explained_variance(x, x_hat), rel=1e-9)
    assert stats.mse == pytest.approx(evals.mse(x, x_hat), rel=1e-6)
    assert stats.l0 == pytest.approx(float(evals.l0(feats).mean()))
    torch.testing.assert_close(stats.fired, (feats != 0).sum(0))


def test_typical_explained_variance_leaves_out_massive_activations():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, 8, generator=gen)
    x[17] *= 50.0  # one token with a massive norm, as SmolLM2 gives some first tokens
    x_hat = x + 0.3 * torch.randn(200, 8, generator=gen)
    x_hat[17] = x[17] * 0.9  # reconstructed well in relative terms, but its residual is huge
    feats = torch.relu(torch.randn(200, 16, generator=gen))
    stats = ReconstructionStats(d_sae=16)
    for part in (slice(0, 100), slice(100, 200)):
        stats.add(x[part], feats[part], x_hat[part])
    ordinary = torch.ones(200, dtype=torch.bool)
    ordinary[17] = False
    assert stats.n_massive == 1
    assert stats.typical.n_tokens == 199
    typical = evals.explained_variance(x[ordinary], x_hat[ordinary])
    assert stats.explained_variance_typical == pytest.approx(typical, rel=1e-9)
    # The pooled number is dominated by the one token; the typical one is not.
    assert stats.explained_variance == pytest.approx(evals.explained_variance(x, x_hat), rel=1e-9)
    assert abs(stats.explained_variance - stats.typical.explained_variance) > 0.05
