"""Sparsity calibration reaches a requested L0 within ±20% on synthetic sparse data; TopK and
BatchTopK set k from it directly."""

from __future__ import annotations

import pytest

from saelab.train import TopKConfig, config_for
from saelab.train.calibrate import CalibrationConfig, calibrate_sparsity, coefficient_field
from tests._synthetic import synthetic_source

D_IN, BATCH = 16, 128


def _cfg(activation, **kw):
    return config_for(
        activation, d_in=D_IN, d_sae=64, batch_size=BATCH, lr=3e-3, total_steps=400,
        lr_warmup_steps=10, lr_decay_steps=50, seed=0, device="cpu", **kw,
    )


@pytest.mark.parametrize("activation, target", [("relu", 6.0), ("jumprelu", 6.0)])
def test_calibration_hits_target_l0(activation, target):
    source = synthetic_source(D_IN, BATCH, n_atoms=48, p_active=0.08, seed=1)
    calib = CalibrationConfig(target_l0=target, steps_per_trial=150, measure_last=30, max_trials=14)
    # JumpReLU thresholds must start (and have a kernel window) on the scale of the
    # pre-activations, here O(1), or 150-step trials cannot move them far enough.
    extra = {"jumprelu_init_threshold": 0.5, "jumprelu_bandwidth": 0.5} if activation == "jumprelu" else {}
    result = calibrate_sparsity(_cfg(activation, **extra), source, calib)
    assert result.converged, result.trials
    assert abs(result.achieved_l0 - target) <= 0.2 * target
    field = "l1_coefficient" if activation == "relu" else "l0_coefficient"
    assert coefficient_field(result.cfg) == field and getattr(result.cfg, field) == result.coefficient
    # The search really searched: L0 responded to the coefficient in the expected direction.
    trials = result.trials.sort_values("coefficient")
    assert trials["l0"].iloc[0] >= trials["l0"].iloc[-1]


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_k_architectures_need_no_search(activation):
    result = calibrate_sparsity(_cfg(activation, k=4), synthetic_source(D_IN, BATCH), CalibrationConfig(target_l0=9.4))
    assert type(result.cfg) is type(_cfg(activation)) and isinstance(result.cfg, TopKConfig)
    assert result.cfg.k == 9 and result.converged and len(result.trials) == 1
    assert coefficient_field(result.cfg) == "k"


def test_bad_calibration_config_lists_every_problem():
    with pytest.raises(ValueError, match="target_l0"):
        CalibrationConfig(target_l0=0)
    with pytest.raises(ValueError, match="measure_last"):
        CalibrationConfig(target_l0=5, steps_per_trial=10, measure_last=20)
    with pytest.raises(ValueError, match="target_l0 must be positive.*tolerance must be in"):
        CalibrationConfig(target_l0=-1, tolerance=2.0)


def test_search_stops_when_l0_stops_responding(caplog):
    source = synthetic_source(D_IN, BATCH, n_atoms=48, p_active=0.08, seed=1)
    calib = CalibrationConfig(target_l0=1.0, steps_per_trial=40, measure_last=10, max_trials=12, initial=1.0)
    result = calibrate_sparsity(_cfg("jumprelu"), source, calib)  # tiny default thresholds barely move
    assert not result.converged
    assert len(result.trials) < 12
    assert "stopped responding" in caplog.text
    assert "threshold init or bandwidth" in caplog.text  # the architecture's own hint
