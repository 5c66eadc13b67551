"""An SAE's summary on the dashboard's source: sparsity and fidelity measured by the pass,
numbers measured elsewhere (``metrics``), the specialists table and the explanation scores
beside their controls. A metric nobody measured is None, never a guess."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from saelab.autointerp.summary import score_summary
from saelab.dashboards.accumulators import Coactivation, Reconstruction
from saelab.dashboards.data import FeatureDashboard
from saelab.evals.metrics import DEFAULT_DENSE_THRESHOLD

MEASURED_ELSEWHERE = ("ce_loss_clean", "ce_loss_spliced", "ce_loss_zero", "ce_loss_recovered", "kl_div",
                      "train_tokens")  # fmt: skip
"""Fields of ``metrics`` (e.g. the bundled suite's metrics.json) copied into the summary."""


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def summarise(features: dict[int, FeatureDashboard], coact: Coactivation, recon: Reconstruction, n_tokens: int,
              d_sae: int, metrics: Mapping[str, Any] | None, specialists: pd.DataFrame | None,
              explanations: pd.DataFrame | None) -> dict[str, Any]:  # fmt: skip
    """L0, dead and dense shares over all features (the pass counts every feature's firings,
    whichever features the dashboard shows), explained variance, and the rest."""
    fired = coact.fired_F.double()
    density = fired / max(1, n_tokens)
    out: dict[str, Any] = {
        "n_tokens": n_tokens,
        "n_features": len(features),
        "d_sae": d_sae,
        "l0": float(fired.sum()) / max(1, n_tokens),
        "explained_variance": recon.explained_variance(),
        "dead_fraction": float((fired == 0).double().mean()),
        "dense_fraction": float((density > DEFAULT_DENSE_THRESHOLD).double().mean()),
        "dense_threshold": DEFAULT_DENSE_THRESHOLD,
    }
    given = dict(metrics or {})
    out.update({name: _plain(given.get(name)) for name in MEASURED_ELSEWHERE})
    if specialists is not None:
        out["specialists"] = _rows(pd.DataFrame(specialists[specialists["is_specialist"].astype(bool)]))
    else:
        out["specialists"] = []
    usable = explanations is not None and any(c.startswith("shuffled_") for c in explanations) and len(explanations)
    out["explanation_scores"] = _rows(score_summary(explanations)) if usable else []  # type: ignore[arg-type]
    return {k: _plain(v) for k, v in out.items()}
