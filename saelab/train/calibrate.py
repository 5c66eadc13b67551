"""Sparsity calibration: find the setting that gives a requested L0.

Each architecture names the config field that sets its sparsity (its registry entry's
:class:`~saelab.train.registry.Calibration`). A penalty coefficient (ReLU's L1 weight,
JumpReLU's L0 weight) is searched: L0 falls as it grows, so we bisect on it in log space
with short training runs. TopK and BatchTopK need no search: their L0 is k.
A short run's L0 drifts a little as training continues, which is why the tolerance is a band
(default ±20%) and the final run should use the same schedule length as the trials where
possible.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from saelab._util.config import JsonConfig
from saelab.train.config import TrainConfig
from saelab.train.registry import get_architecture
from saelab.train.trainer import BatchSource, RunConfig, fit

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationConfig(JsonConfig):
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
        problems = []
        if self.target_l0 <= 0:
            problems.append(f"target_l0 must be positive, got {self.target_l0}")
        if not 0 < self.tolerance < 1:
            problems.append(f"tolerance must be in (0, 1), got {self.tolerance}")
        if self.steps_per_trial < 1 or self.max_trials < 1:
            problems.append(
                f"steps_per_trial and max_trials must be >= 1, got {self.steps_per_trial}, {self.max_trials}"
            )
        if self.measure_last < 1 or self.measure_last > self.steps_per_trial:
            problems.append(f"measure_last must be between 1 and steps_per_trial, got {self.measure_last}")
        self.raise_problems(problems)


@dataclass(frozen=True)
class CalibrationResult:
    """The coefficient found and the evidence for it."""

    cfg: TrainConfig
    """The input config with the calibrated coefficient (or k) filled in."""
    coefficient: float
    """The value found for the architecture's calibration field."""
    achieved_l0: float
    converged: bool
    """Whether achieved_l0 is within the tolerance band."""
    trials: pd.DataFrame
    """One row per trial: coefficient, l0, explained_variance."""


def coefficient_field(cfg: TrainConfig) -> str:
    """The config field that sets ``cfg``'s sparsity (``l1_coefficient``, ``k``, ...)."""
    return get_architecture(cfg.activation).calibration.field


def calibrate_sparsity(
    cfg: TrainConfig, source: BatchSource, calib: CalibrationConfig, replicas: Replicas | None = None
) -> CalibrationResult:
    """Set or search the sparsity field of ``cfg`` so that training reaches ``calib.target_l0``.
    With ``replicas`` the trials train data-parallel (``source`` serves this rank's shares);
    their L0 is global, so every rank takes the same decisions."""
    entry = get_architecture(cfg.activation).calibration
    name = entry.field
    if entry.method == "set_to_target":
        value = max(1, min(cfg.d_sae, round(calib.target_l0)))
        row = {"coefficient": value, "l0": float(value), "explained_variance": math.nan}
        calibrated = dataclasses.replace(cfg, **{name: value})
        return CalibrationResult(calibrated, value, float(value), True, pd.DataFrame([row]))
    trials: list[dict[str, float]] = []
    low = high = None  # coefficients known to give too many / too few active latents
    coef = calib.initial if calib.initial is not None else getattr(cfg, name)
    for _ in range(calib.max_trials):
        l0, ev = _trial(cfg, name, coef, source, calib, replicas)
        trials.append({"coefficient": coef, "l0": l0, "explained_variance": ev})
        log.info("calibration: %s=%.4g gives L0 %.2f (target %.2f)", name, coef, l0, calib.target_l0)
        if abs(l0 - calib.target_l0) <= calib.tolerance * calib.target_l0:
            break
        if _stalled(trials):
            log.warning(
                "calibration: L0 stopped responding to %s (%.2f -> %.2f); the trials may be too short%s",
                name, trials[-2]["l0"], l0, f", or {entry.stall_hint}" if entry.stall_hint else "",
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


def _trial(
    cfg: TrainConfig,
    name: str,
    coef: float,
    source: BatchSource,
    calib: CalibrationConfig,
    replicas: Replicas | None,
) -> tuple[float, float]:
    steps = calib.steps_per_trial
    trial_cfg = dataclasses.replace(
        cfg,
        **{name: coef},
        total_steps=steps,
        lr_warmup_steps=min(cfg.lr_warmup_steps, steps // 4),
        lr_decay_steps=0,  # measure at full lr; a decayed tail would freeze L0 early
    )
    result = fit(trial_cfg, source, RunConfig(progress=False, log_every=1), replicas)
    tail = result.history.tail(calib.measure_last)
    return float(tail["l0"].to_numpy().mean()), float(tail["explained_variance"].to_numpy().mean())
