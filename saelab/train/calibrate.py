"""Sparsity calibration: find the penalty that gives a requested L0 (seed 002's "lambda calibration").

L0 falls as the sparsity coefficient grows (L1 weight for ReLU, L0 weight for JumpReLU), so
we bisect on it in log space with short training runs. TopK needs no search: its L0 is k.
A short run's L0 drifts a little as training continues, which is why the tolerance is a band
(default ±20%) and the final run should use the same schedule length as the trials where
possible.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import pandas as pd

from saelab.train.config import TrainConfig
from saelab.train.trainer import BatchSource, RunConfig, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationConfig:
    """How to search for the sparsity coefficient."""

    target_l0: float
    """Requested mean number of active latents per token."""
    tolerance: float = 0.2
    """Accept a coefficient whose L0 is within this relative band of the target."""
    steps_per_trial: int = 200
    """Optimizer steps of each short trial run."""
    measure_last: int = 50
    """L0 is averaged over this many final steps of a trial (the start is still moving)."""
    max_trials: int = 12
    """Give up (returning the best so far, with a warning) after this many trials."""
    initial: float | None = None
    """First coefficient to try; None uses the config's own."""

    def __post_init__(self) -> None:
        if self.target_l0 <= 0:
            raise ValueError(f"target_l0 must be positive, got {self.target_l0}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if self.measure_last < 1 or self.measure_last > self.steps_per_trial:
            raise ValueError("measure_last must be between 1 and steps_per_trial")


@dataclass(frozen=True)
class CalibrationResult:
    """The coefficient found and the evidence for it."""

    cfg: TrainConfig
    """The input config with the calibrated coefficient (or k) filled in."""
    coefficient: float
    achieved_l0: float
    converged: bool
    """Whether achieved_l0 is within the tolerance band."""
    trials: pd.DataFrame
    """One row per trial: coefficient, l0, explained_variance."""


def coefficient_field(cfg: TrainConfig) -> str:
    return {"relu": "l1_coefficient", "jumprelu": "l0_coefficient", "topk": "k"}[cfg.activation]


def calibrate_sparsity(cfg: TrainConfig, source: BatchSource, calib: CalibrationConfig) -> CalibrationResult:
    """Search the sparsity coefficient of ``cfg`` so that training reaches ``calib.target_l0``."""
    if cfg.activation == "topk":
        k = max(1, min(cfg.d_sae, round(calib.target_l0)))
        row = {"coefficient": k, "l0": float(k), "explained_variance": math.nan}
        return CalibrationResult(dataclasses.replace(cfg, k=k), k, float(k), True, pd.DataFrame([row]))
    name = coefficient_field(cfg)
    trials: list[dict[str, float]] = []
    low = high = None  # coefficients known to give too many / too few active latents
    coef = calib.initial if calib.initial is not None else getattr(cfg, name)
    for _ in range(calib.max_trials):
        l0, ev = _trial(cfg, name, coef, source, calib)
        trials.append({"coefficient": coef, "l0": l0, "explained_variance": ev})
        log.info("calibration: %s=%.4g gives L0 %.2f (target %.2f)", name, coef, l0, calib.target_l0)
        if abs(l0 - calib.target_l0) <= calib.tolerance * calib.target_l0:
            break
        if _stalled(trials):
            log.warning(
                "calibration: L0 stopped responding to %s (%.2f -> %.2f); the trials may be too short, "
                "or (JumpReLU) the threshold init/bandwidth too small for the activations' scale",
                name, trials[-2]["l0"], l0,
            )
            break
        if l0 > calib.target_l0:
            low = coef
        else:
            high = coef
        coef = _next_coefficient(low, high, l0, calib.target_l0, coef)
    best = min(trials, key=lambda t: abs(t["l0"] - calib.target_l0))
    converged = abs(best["l0"] - calib.target_l0) <= calib.tolerance * calib.target_l0
    if not converged:
        log.warning("calibration did not reach L0 %.1f ± %d%%; best %s", calib.target_l0, calib.tolerance * 100, best)
    return CalibrationResult(
        cfg=dataclasses.replace(cfg, **{name: best["coefficient"]}),
        coefficient=best["coefficient"],
        achieved_l0=best["l0"],
        converged=converged,
        trials=pd.DataFrame(trials),
    )


def _stalled(trials: list[dict[str, float]]) -> bool:
    """Two trials whose coefficients differ by 2x+ but whose L0 moved by under 2%."""
    if len(trials) < 2:
        return False
    a, b = trials[-2], trials[-1]
    ratio = max(a["coefficient"], b["coefficient"]) / max(min(a["coefficient"], b["coefficient"]), 1e-30)
    return ratio >= 2 and abs(a["l0"] - b["l0"]) <= 0.02 * max(a["l0"], 1e-9)


def _next_coefficient(low: float | None, high: float | None, l0: float, target: float, coef: float) -> float:
    if low is not None and high is not None:
        return math.sqrt(low * high)  # bisection in log space
    # Not bracketed yet: step by the L0 ratio (at least x2) in the right direction.
    factor = max(2.0, (l0 / target) ** 1.5 if l0 > target else (target / l0 if l0 > 0 else 10.0) ** 1.5)
    return coef * factor if l0 > target else coef / factor


def _trial(cfg: TrainConfig, name: str, coef: float, source: BatchSource, calib: CalibrationConfig) -> tuple[float, float]:
    steps = calib.steps_per_trial
    trial_cfg = dataclasses.replace(
        cfg,
        **{name: coef},
        total_steps=steps,
        lr_warmup_steps=min(cfg.lr_warmup_steps, steps // 4),
        lr_decay_steps=0,  # measure at full lr; a decayed tail would freeze L0 early
    )
    result = fit(trial_cfg, source, RunConfig(progress=False, log_every=1))
    tail = result.history.tail(calib.measure_last)
    return float(tail["l0"].mean()), float(tail["explained_variance"].mean())
