"""Score distributions beside their controls: per explainer and metric, the median score,
the median of the shuffled control, the all-negative baseline, and the median paired margin
over the shuffled control with its bootstrap CI. A score means something only as that margin."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saelab.autointerp.scorers.metrics import median_margin


def metrics_of(frame: pd.DataFrame) -> list[str]:
    """The metrics a records frame holds: every ``score_M`` column but the timing."""
    return [c.removeprefix("score_") for c in frame.columns if c.startswith("score_") and c != "score_seconds"]


def score_summary(frame: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (explainer, metric): ``n`` scored features, ``median``, ``median_shuffled``,
    ``all_negative``, ``margin`` (median of score − shuffled) with ``margin_low``/``margin_high``
    (95% bootstrap CI over features) and ``share_positive`` (features beating their control)."""
    rows = []
    keys = ["decomposition", "explainer"] if "decomposition" in frame else ["explainer"]
    for key, part in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics_of(part):
            score, control = part[f"score_{metric}"].to_numpy(float), part[f"shuffled_{metric}"].to_numpy(float)
            margin = median_margin(score, control, n_boot=n_boot, seed=seed)
            rows.append({**dict(zip(keys, key, strict=True)), "metric": metric, "n": int(np.isfinite(score).sum()),
                         "median": _median(score), "median_shuffled": _median(control),
                         "all_negative": _median(part[f"all_negative_{metric}"].to_numpy(float)),
                         "margin": margin.median, "margin_low": margin.low, "margin_high": margin.high,
                         "share_positive": margin.share_positive})  # fmt: skip
    return pd.DataFrame(rows)


def _median(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")
