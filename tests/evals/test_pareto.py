"""Pareto frontiers of a sweep on hand-made points: which points no other beats, each
architecture's line, and the winner per L0 (never extrapolated)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import viz
from saelab.evals.pareto import frontier, pareto_mask, winners


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "member": list("abcdefg"),
        "activation": ["topk"] * 4 + ["relu"] * 3,
        "l0": [16, 32, 64, 32, 16, 32, 128],
        "explained_variance": [0.70, 0.80, 0.88, 0.75, 0.65, 0.82, 0.90],
        "ce_loss_recovered": [0.90, 0.94, 0.97, 0.93, 0.85, 0.95, 0.98],
    })  # fmt: skip


def test_the_mask_keeps_exactly_the_undominated_points() -> None:
    l0 = np.array([1, 2, 2, 3, 4])
    quality = np.array([0.5, 0.4, 0.6, 0.6, 0.9])
    # (2, 0.4) loses to (1, 0.5); (3, 0.6) ties (2, 0.6) on quality at a higher L0
    assert pareto_mask(l0, quality).tolist() == [True, False, True, False, True]
    assert pareto_mask(np.array([1.0, np.nan]), np.array([0.5, 0.9])).tolist() == [True, False]
    with pytest.raises(ValueError, match="of one length"):
        pareto_mask(np.ones(2), np.ones(3))


def test_each_architecture_has_its_line_and_the_winner_is_read_inside_its_range() -> None:
    frame = _frame()
    lines = frontier(frame)
    assert lines[lines["activation"] == "topk"]["member"].tolist() == ["a", "b", "c"]  # d is beaten by b
    assert lines.set_index("member").loc["f", "on_frontier"] and not lines.set_index("member").loc["b", "on_frontier"]
    table = winners(frame).set_index("l0")
    assert table.loc[32, "winner"] == "relu" and table.loc[32, "margin"] == pytest.approx(0.02)
    assert table.loc[16, "winner"] == "topk"
    # relu's line reaches L0 128, topk's stops at 64: at 128 only relu counts
    assert np.isnan(table.loc[128, "topk"]) and table.loc[128, "winner"] == "relu"
    # 64 lies inside relu's range: its line is read in log L0 between 32 and 128
    assert table.loc[64, "relu"] == pytest.approx(0.86)
    with pytest.raises(ValueError, match="no column 'kl'"):
        frontier(frame, "kl")


def test_the_frontier_figure_draws_a_line_per_architecture_and_the_reference() -> None:
    fig = viz.sweep_frontiers(_frame(), reference={"name": "bundled", "l0": 32, "explained_variance": 0.81,
                                                   "ce_loss_recovered": 0.96})  # fmt: skip
    names = [t.name for t in fig.data]
    assert names.count("topk") == 4 and names.count("bundled") == 2  # line + points, two panels
    lines = [t for t in fig.data if t.mode == "lines" and t.name == "topk"]
    assert list(lines[0].x) == [16, 32, 64]
    assert fig.layout.xaxis.type == "log"
