"""saelab.evals.metrics: hand-computed explained variance, MSE, L0, density and its histograms,
and agreement with SAELens's ``ExplainedVarianceCalculator`` (add_batch / compute, the
post-fix explained variance) fed the same batches."""

from __future__ import annotations

import pytest
import torch
from sae_lens.evals import ExplainedVarianceCalculator

from saelab import evals
from saelab.evals.metrics import fvu


def test_explained_variance_hand_computed():
    # mean (2, 1); total variance = 1 + 1 = 2; residual = 1 -> EV 0.5 (from zero it would be 1 - 1/12).
    x = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    assert evals.explained_variance(x, x.clone()) == 1.0
    assert evals.explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-12)
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 1.0]])
    assert evals.explained_variance(x, x_hat) == pytest.approx(0.5)
    assert fvu(x, x_hat) == pytest.approx(0.5)
    # Pooled, not a mean of per-token ratios: 1 - 1/8 over three tokens.
    x3 = torch.tensor([[0.0], [2.0], [4.0]])
    assert evals.explained_variance(x3, torch.tensor([[1.0], [2.0], [4.0]])) == pytest.approx(0.875)
    # Leading dims are tokens too.
    assert evals.explained_variance(x[None], x_hat[None]) == pytest.approx(0.5)


def test_explained_variance_constant_input_follows_saelens_convention():
    x = torch.ones(4, 3)
    assert evals.explained_variance(x, x.clone()) == 1.0
    assert evals.explained_variance(x, torch.zeros_like(x)) == 0.0


def test_mse_and_l0_hand_computed():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert evals.mse(x, torch.zeros_like(x)) == pytest.approx(2.0)  # (0 + 4) / 2 tokens
    feats = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.0]])
    torch.testing.assert_close(evals.l0(feats), torch.tensor([2.0, 0.0, 2.0]))
    assert evals.l0(feats[None]).shape == (1, 3)


def test_dead_dense_and_density():
    counts = torch.tensor([0, 5, 1, 10])
    density = evals.feature_density(counts, 10)
    torch.testing.assert_close(density, torch.tensor([0.0, 0.5, 0.1, 1.0]))
    assert evals.dead_fraction(counts, 10) == 0.25
    assert evals.dense_fraction(density) == 0.5  # 0.1 itself is not above the threshold
    assert evals.dense_fraction(density, threshold=0.05) == 0.75
    with pytest.raises(ValueError, match="n_tokens must be positive"):
        evals.dead_fraction(counts, 0)
    with pytest.raises(ValueError, match=r"\[0, n_tokens=4\]"):
        evals.feature_density(counts, 4)


def test_density_histogram_counts():
    # Off the decade edges: float32 densities such as 0.01 sit a hair below 10^-2.
    density = torch.tensor([0.0, 0.002, 0.02, 0.2, 1.0, 0.5])
    hist = evals.density_histogram(density, torch.tensor([-3.0, -2.0, -1.0, 0.0]))
    assert hist.counts.tolist() == [1, 1, 3]  # [-3,-2): 0.002; [-2,-1): 0.02; [-1, 0]: 0.2, 0.5, 1
    assert (hist.n_dead, hist.n_outside) == (1, 0)
    narrow = evals.density_histogram(density, torch.tensor([-2.0, -1.0]))
    assert narrow.counts.tolist() == [1] and narrow.n_outside == 4
    auto = evals.density_histogram(density, bins=6)
    assert auto.log10_edges[0] == -3 and auto.log10_edges[-1] == 0 and len(auto.counts) == 6
    assert int(auto.counts.sum()) + auto.n_dead == len(density)
    with pytest.raises(ValueError, match="increasing"):
        evals.density_histogram(density, torch.tensor([0.0, -1.0]))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        evals.mse(torch.zeros(2, 3), torch.zeros(3, 2))


def test_explained_variance_agrees_with_saelens_calculator():
    """SAELens: ``sae_lens.evals.ExplainedVarianceCalculator`` fed the same batches."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, 12, generator=gen) * 3 + torch.randn(12, generator=gen) * 20
    x_hat = x + 1.3 * torch.randn(3, 40, 12, generator=gen)
    theirs = ExplainedVarianceCalculator()
    for xb, x_hat_b in zip(x, x_hat, strict=True):
        theirs.add_batch(sae_output=x_hat_b, hidden_acts=xb)
    ours = evals.explained_variance(x, x_hat)
    assert 0.5 < ours < 0.95
    # SAELens squares and sums each batch in float32 before moving to float64; we stay in float64.
    assert ours == pytest.approx(theirs.compute(), rel=1e-5)


def test_shared_density_histograms_use_one_set_of_edges():
    from saelab.evals import EvalResult, density_histogram, shared_density_histograms

    def result(density):
        hist = density_histogram(density)
        return EvalResult(
            hook="h", d_sae=len(density), exclude_bos=True, ablate_bos=True, n_tokens=1000, n_predictions=0,
            l0=1.0, explained_variance=0.5, mse=1.0, ce_loss_clean=float("nan"), ce_loss_spliced=float("nan"),
            ce_loss_zero=float("nan"), ce_loss_recovered=float("nan"), kl_div=float("nan"), dead_fraction=0.0,
            dense_fraction=0.0, dense_threshold=0.1, density=density, histogram=hist,
        )

    a = result(torch.tensor([1e-3, 1e-2, 0.0]))
    b = result(torch.tensor([2e-5, 0.5, 0.5]))
    assert not torch.equal(a.histogram.log10_edges, b.histogram.log10_edges)  # why sharing is needed
    shared = shared_density_histograms({"a": a, "b": b}, bins=10)
    assert torch.equal(shared["a"].log10_edges, shared["b"].log10_edges)
    assert float(shared["a"].log10_edges[0]) == -5.0  # floor(log10(2e-5))
    assert int(shared["a"].counts.sum()) + shared["a"].n_dead == 3
    assert int(shared["b"].counts.sum()) == 3
