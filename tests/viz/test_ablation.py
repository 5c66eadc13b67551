"""Figures of ablation: estimate against measurement, direct against total logit effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saelab import viz


def test_estimate_vs_ablation_reports_each_methods_correlation():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=30)
    frame = pd.DataFrame({"ablation": truth, "grad_x_act": truth + rng.normal(scale=1.0, size=30),
                          "integrated_gradients": truth})  # fmt: skip
    fig = viz.estimate_vs_ablation_figure(frame)
    names = [t.name for t in fig.data]
    assert names[1] == "integrated gradients (r = 1.000)"
    r = np.corrcoef(frame.grad_x_act, truth)[0, 1]
    assert names[0] == f"grad x act (r = {r:.3f})" and names[-1] == "y = x"
    np.testing.assert_allclose(fig.data[0].y, truth)
    with pytest.raises(ValueError, match="ablation"):
        viz.estimate_vs_ablation_figure(frame.drop(columns="ablation"))
    with pytest.raises(ValueError, match="empty"):
        viz.estimate_vs_ablation_figure(frame.iloc[:0])


def test_logit_effect_shows_promoted_and_suppressed_tokens_in_two_panels():
    top = pd.DataFrame({"direction": ["promoted", "promoted", "suppressed", "suppressed"], "rank": [1, 2, 1, 2],
                        "token": [" def", " class", " the", "."], "logit": [2.0, 1.5, -1.0, -2.5]})  # fmt: skip
    fig = viz.logit_effect_figure(top, top.assign(logit=top.logit * 0.5))
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == [-2.5, -1.0, 1.5, 2.0]  # sorted by logit
    assert list(fig.data[1].x) == [-1.25, -0.5, 0.75, 1.0]
    assert fig.data[0].marker.color[-1] == "#009E73" and fig.data[0].marker.color[0] == "#D55E00"
    with pytest.raises(ValueError, match="logit"):
        viz.logit_effect_figure(top.drop(columns="logit"), top)


def test_each_method_is_judged_on_its_own_top_nodes():
    frame = pd.DataFrame({"ablation": [1.0, 2.0, 3.0, 10.0], "grad_x_act": [1.0, 2.0, 3.0, -10.0],
                          "integrated_gradients": [1.0, 2.0, 3.0, 10.0],
                          "top_grad_x_act": [True, True, True, False],
                          "top_integrated_gradients": True})  # fmt: skip
    fig = viz.estimate_vs_ablation_figure(frame)
    assert fig.data[0].name == "grad x act (r = 1.000)" and len(fig.data[0].x) == 3
    assert len(fig.data[1].x) == 4
