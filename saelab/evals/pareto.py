"""Sparsity against fidelity: which SAEs no other SAE beats, and which architecture wins where.

A point (L0, quality) is on the frontier when no other point has an L0 as low or lower and a
quality as high or higher, one of them strictly. Each architecture's frontier is a line;
``winners`` reads those lines at each L0 the sweep measured and names the best architecture
there (an architecture only counts inside the L0 range its own points span: no extrapolation).
Pure pandas and numpy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUALITIES = ("explained_variance", "explained_variance_typical", "ce_loss_recovered")
"""Higher-is-better columns a frontier can be drawn on."""


def pareto_mask(l0: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """``[n]`` bool: the points no other point dominates (lower L0 and higher quality are better)."""
    l0, quality = np.asarray(l0, float), np.asarray(quality, float)
    if l0.shape != quality.shape or l0.ndim != 1:
        raise ValueError(f"l0 and quality must be 1-D and of one length, got {l0.shape} and {quality.shape}")
    finite = np.isfinite(l0) & np.isfinite(quality)
    keep = np.zeros(len(l0), dtype=bool)
    for i in np.flatnonzero(finite):
        better = finite & (l0 <= l0[i]) & (quality >= quality[i]) & ((l0 < l0[i]) | (quality > quality[i]))
        keep[i] = not better.any()
    return keep


def frontier(frame: pd.DataFrame, quality: str = "explained_variance", by: str = "activation") -> pd.DataFrame:
    """The rows of ``frame`` on each ``by`` group's own frontier, sorted by L0 (``on_frontier``
    also marks the sweep-wide frontier)."""
    _check(frame, quality, by)
    parts = []
    for _, part in frame.groupby(by, sort=False):
        parts.append(part[pareto_mask(part["l0"].to_numpy(), part[quality].to_numpy())])
    out = pd.concat(parts).sort_values([by, "l0"], kind="stable")
    overall = pareto_mask(frame["l0"].to_numpy(), frame[quality].to_numpy())
    return out.assign(on_frontier=out.index.isin(frame.index[overall]))


def winners(frame: pd.DataFrame, quality: str = "explained_variance", by: str = "activation") -> pd.DataFrame:
    """Per L0 the sweep measured: each architecture's frontier read there (linear in log L0,
    inside its own range), and the winner with its margin over the runner-up."""
    lines = frontier(frame, quality, by)
    grid = np.unique(frame["l0"].to_numpy(float)[np.isfinite(frame["l0"].to_numpy(float))])
    rows = []
    for l0 in grid:
        row: dict[str, float | str] = {"l0": float(l0)}
        for name, part in lines.groupby(by, sort=False):
            x, y = np.log(part["l0"].to_numpy(float)), part[quality].to_numpy(float)
            inside = x.min() - 1e-9 <= np.log(l0) <= x.max() + 1e-9
            row[str(name)] = float(np.interp(np.log(l0), x, y)) if inside else float("nan")
        values = pd.Series({k: v for k, v in row.items() if k != "l0"}, dtype=float).dropna()
        row["winner"] = str(values.idxmax()) if len(values) else ""
        row["margin"] = float(values.max() - values.drop(values.idxmax()).max()) if len(values) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _check(frame: pd.DataFrame, quality: str, by: str) -> None:
    missing = [c for c in ("l0", quality, by) if c not in frame]
    if missing:
        raise ValueError(f"the sweep frame has no column {missing[0]!r}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError("the sweep frame is empty")
