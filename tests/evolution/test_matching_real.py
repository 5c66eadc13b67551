"""The decoder null on real dictionaries: noisy copies of one bundled SAE's features among
features of another layer that resemble none of them. Unrelated real directions are far more
alike than random ones, so a null that real dictionaries do not respect calls them matches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saelab
from saelab.evolution import match_features
from saelab.evolution.similarity import decoder_directions

N_COPIES, N_UNRELATED, COPY_COSINE = 3000, 1608, 0.8


@pytest.fixture(scope="module")
def planted():
    """A: blocks.20's decoder. B: noisy copies (cosine 0.8) of 3,000 of its rows, and 1,608
    rows of blocks.28 whose best cosine to any row of blocks.20 is under 0.3, shuffled.
    Returns A, B and the truth (each A feature's copy in B, or -1)."""
    profile = saelab.profiles.get("offline")
    a = decoder_directions(profile.load_sae("blocks.20.hook_resid_pre", device="cpu"), "a")
    deep = decoder_directions(profile.load_sae("blocks.28.hook_resid_pre", device="cpu"), "b")
    gen = torch.Generator().manual_seed(0)
    source = torch.randperm(a.shape[0], generator=gen)[:N_COPIES]
    noise = torch.randn(N_COPIES, a.shape[1], generator=gen)
    noise -= (noise * a[source]).sum(1, keepdim=True) * a[source]  # orthogonal to the original
    noise /= noise.norm(dim=1, keepdim=True)
    copies = COPY_COSINE * a[source] + (1 - COPY_COSINE**2) ** 0.5 * noise
    unrelated = deep[(deep @ a.T).max(dim=1).values < 0.3][:N_UNRELATED]
    assert len(unrelated) == N_UNRELATED
    order = torch.randperm(N_COPIES + N_UNRELATED, generator=gen)
    b = torch.cat([copies, unrelated])[order]
    truth = np.full(a.shape[0], -1)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))
    truth[source.numpy()] = position[:N_COPIES].numpy()
    return a, b, truth


def _scores(matches, truth):
    pred = np.where(matches.best["matched"], matches.best["best_match"], -1)
    hits = ((pred == truth) & (pred >= 0)).sum()
    return hits / max((pred >= 0).sum(), 1), hits / (truth >= 0).sum()


@pytest.mark.parametrize("method", ["decoder", "hungarian"])
def test_real_unrelated_features_do_not_pass_the_null(planted, method):
    a, b, truth = planted
    matches = match_features(a, b, method=method)
    precision, recall = _scores(matches, truth)
    assert precision >= 0.95 and recall >= 0.9, (precision, recall, matches.threshold)
    assert matches.null_rate <= 0.05


def test_the_gaussian_null_is_what_real_dictionaries_beat(planted):
    # The covariance-matched Gaussian null, kept as an option, sets its threshold below the
    # similarity that unrelated real features reach: that is why it is no longer the default.
    a, b, truth = planted
    gaussian = match_features(a, b, null="gaussian")
    dictionary = match_features(a, b)
    assert gaussian.threshold < dictionary.threshold
    assert _scores(gaussian, truth)[0] < _scores(dictionary, truth)[0]
