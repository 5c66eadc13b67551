"""saelab.viz.sparsity: density histograms (from counts and edges or from saelab.evals, one
SAE or several overlaid) and the dense-vs-sparse figure of phase 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab import viz
from saelab.viz.sparsity import density_histogram


def test_density_histogram_from_counts_and_edges():
    fig = density_histogram((np.array([3, 0, 1]), np.array([0.0, 1.0, 2.0, 4.0])))
    (bar,) = fig.data
    np.testing.assert_allclose(bar.x, [0.5, 1.5, 3.0])
    np.testing.assert_allclose(bar.width, [1.0, 1.0, 2.0])
    assert list(bar.y) == [3, 0, 1]
    assert fig.layout.xaxis.title.text == "activation"
    assert not fig.layout.annotations


def test_density_histogram_from_evals_notes_dead_features():
    from saelab.evals import density_histogram as evals_hist

    density = torch.tensor([0.0, 0.0, 1e-3, 1e-2, 0.5])
    hist = evals_hist(density, bins=3)
    fig = density_histogram(hist)
    (bar,) = fig.data
    assert sum(bar.y) == 3  # live features only
    assert "log10" in fig.layout.xaxis.title.text
    assert fig.layout.annotations[0].text.startswith("2 dead feature(s)")


def test_density_histogram_rejects_mismatched_edges():
    with pytest.raises(ValueError, match="len\\(edges\\) == len\\(counts\\) \\+ 1"):
        density_histogram(([1, 2], [0.0, 1.0]))
    with pytest.raises(ValueError, match="DensityHistogram or a \\(counts, edges\\)"):
        density_histogram(5)


def test_density_histograms_overlay_one_line_per_sae():
    from saelab.evals import density_histogram as evals_hist

    edges = torch.linspace(-4, 0, 5)
    hists = {
        "relu": evals_hist(torch.tensor([0.0, 1e-3, 1e-2, 0.5]), bins=edges),
        "topk": evals_hist(torch.tensor([1e-3, 1e-3, 2e-2, 0.1]), bins=edges),
    }
    fig = viz.density_histograms(hists)
    assert [t.name for t in fig.data] == ["relu (1 dead)", "topk (0 dead)"]
    assert sum(fig.data[0].y) == 3 and sum(fig.data[1].y) == 4
    np.testing.assert_allclose(fig.data[0].x, [-3.5, -2.5, -1.5, -0.5])
    other = {"x": evals_hist(torch.tensor([0.1]), bins=torch.linspace(-3, 0, 4))}
    with pytest.raises(ValueError, match="same bin edges"):
        viz.density_histograms({**hists, **other})
    with pytest.raises(ValueError, match="empty"):
        viz.density_histograms({})


def test_dense_vs_sparse_figure_shows_only_features_that_fire():
    from saelab.lessons import DenseVsSparse

    feats = torch.zeros(3, 10)
    feats[0, 4], feats[2, 7], feats[1, 4] = 2.0, 5.0, 1.0
    d = DenseVsSparse(
        tokens=["Hello", " world", "\n"],
        resid=torch.randn(3, 6, generator=torch.Generator().manual_seed(0)),
        codes=feats,
        resid_nonzero_frac=1.0,
        feature_active_frac=3 / 30,
        l0_per_token=(feats > 0).sum(dim=1),
        n_features_active_anywhere=2,
    )
    fig = viz.dense_vs_sparse_figure(d)
    resid, features, l0 = fig.data
    assert np.asarray(resid.z).shape == (3, 6)
    assert list(features.x) == ["#7", "#4"]  # by peak activation; silent features left out
    assert list(l0.y) == [1, 1, 1]
    assert list(fig.layout.yaxis.ticktext) == ["Hello", "␣world", "⏎"]
    assert "2 of 10 features" in fig.layout.title.text
