"""saelab.viz.training: the L0 / explained-variance Pareto front and figure, and training
curves from history rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import viz
from saelab.viz.training import pareto_front


def test_pareto_front_known_answer():
    l0 = np.array([10.0, 20.0, 15.0, 30.0, 20.0])
    ev = np.array([0.6, 0.8, 0.5, 0.79, 0.9])
    # 2 (l0 15, ev .5) is beaten by 0; 1 and 3 are beaten by 4 (l0 20, ev .9).
    assert pareto_front(l0, ev).tolist() == [0, 4]


def test_pareto_figure_one_trace_per_sae_plus_frontier():
    frame = pd.DataFrame(
        {"sae": ["relu", "relu", "topk"], "l0": [10.0, 40.0, 20.0], "explained_variance": [0.6, 0.7, 0.9]}
    )
    fig = viz.pareto(frame)
    assert [t.name for t in fig.data] == ["relu", "topk", "Pareto frontier"]
    assert list(fig.data[-1].x) == [10.0, 20.0]
    assert fig.layout.xaxis.title.text == "L0 (active features per token)"


def test_training_curves_from_history_rows():
    history = [
        {"step": s, "loss": 10.0 / s, "l0": 100.0 / s, "explained_variance": 1 - 1 / s, "lr": 1e-3} for s in range(1, 6)
    ]
    fig = viz.training_curves(history)
    assert [t.y[-1] for t in fig.data] == pytest.approx([2.0, 20.0, 0.8])
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis3.tickformat == ".0%"
    two_runs = pd.DataFrame(history * 2).assign(run=["a"] * 5 + ["b"] * 5)
    fig = viz.training_curves(two_runs, metrics=("l0",), by="run")
    assert [t.name for t in fig.data] == ["a", "b"]
    with pytest.raises(ValueError, match="lacks columns \\['l0'\\]"):
        viz.training_curves([{"step": 1, "loss": 1.0, "explained_variance": 0.5}])
