"""steer(): add and clamp through the splice, strengths in units of typical max, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from saelab.interventions import steer
from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.steering import raw_strengths

HOOK = "blocks.3.hook_resid_pre"
TOKENS = torch.tensor([[1, 504, 3250, 314, 253, 1345]])


def _stats(d_sae: int, typical: float = 2.0) -> FeatureStats:
    typical_max = torch.full((d_sae,), typical)
    typical_max[7] = 0.0  # a feature that never fired on the sample
    return FeatureStats(typical_max, torch.zeros(d_sae), torch.zeros(d_sae), n_texts=10, n_tokens=100)


def _resid_after(model, tokens):
    return model.run_with_cache(tokens, names_filter=[HOOK])[1][HOOK]


def test_add_moves_every_position_but_bos_by_strength_times_typical_max_times_the_decoder_row(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=4)
    stats = _stats(32, typical=2.5)
    clean = _resid_after(tiny_model, TOKENS)
    with steer(tiny_model, sae, {3: 2.0}, stats=stats):
        steered = _resid_after(tiny_model, TOKENS)
    expected = clean.clone()
    expected[:, 1:] += 2.0 * 2.5 * sae.W_dec[3]
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-5)


def test_clamp_sets_the_feature_to_the_value(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=5)
    with steer(tiny_model, sae, {3: 4.0}, mode="clamp", unit="raw"):
        steered = _resid_after(tiny_model, TOKENS)
    feats = sae.encode(steered)
    clean_feats = sae.encode(_resid_after(tiny_model, TOKENS))
    # x' = x + (4 - f_3) W_dec[3]: the error is kept, so re-encoding is not exactly 4, but the
    # change in x is exactly the clamp's.
    clean = _resid_after(tiny_model, TOKENS)
    change = (steered - clean)[0, 1:]
    expected = (4.0 - clean_feats[0, 1:, 3])[:, None] * sae.W_dec[3]
    torch.testing.assert_close(change, expected, atol=1e-4, rtol=1e-4)
    assert feats.shape == clean_feats.shape


@pytest.mark.parametrize(
    ("edits", "kwargs", "error", "match"),
    [
        ({32: 1.0}, {"unit": "raw"}, ValueError, "out of range"),
        ({-1: 1.0}, {"unit": "raw"}, ValueError, "out of range"),
        ({3: math.nan}, {"unit": "raw"}, ValueError, "finite"),
        ({3: math.inf}, {"unit": "raw"}, ValueError, "finite"),
        ({3: 1.0}, {"mode": "boost", "unit": "raw"}, ValueError, "mode"),
        ({3: 1.0}, {"unit": "sigma"}, ValueError, "unit"),
        ({7: 1.0}, {}, ValueError, "never fire"),
        ({}, {"unit": "raw"}, ValueError, "no features"),
    ],
)
def test_bad_steering_requests_get_clear_errors(tiny_model, make_sae, edits, kwargs, error, match):
    sae = make_sae(tiny_model.cfg.d_model, 32, HOOK)
    with pytest.raises(error, match=match), steer(tiny_model, sae, edits, stats=_stats(32), **kwargs):
        pass


def test_raw_strengths_needs_matching_stats(make_sae):
    sae = make_sae(16, 32, HOOK)
    assert raw_strengths({1: 3.0}, sae, stats=_stats(32, 0.5)) == {1: 1.5}
    with pytest.raises(ValueError, match="d_sae=8"):
        raw_strengths({1: 3.0}, sae, stats=_stats(8))
