"""The ground-truth check of attribution on a tiny setup: the frame's nodes and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from saelab.interventions.attribution import ablation_effects
from saelab.interventions.attribution_check import (
    attribution_accuracy,
    attribution_vs_ablation,
    prompts_with_next_token,
)
from saelab.interventions.metrics import next_token_logprob


def test_top_nodes_of_both_methods_come_with_their_true_ablation_effect(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 24, "blocks.3.hook_resid_pre", seed=9)
    prompts = prompts_with_next_token(tiny_model, ["The cat sat on the mat and looked", "x = 1\ny = x + 2\nprint"], 6)
    assert prompts.shape == (2, 7)
    frame = attribution_vs_ablation(tiny_model, sae, prompts, lambda row: next_token_logprob(-2), top=5, steps=4,
                                    progress=False)  # fmt: skip
    for _, part in frame.groupby("prompt"):
        assert part["top_grad_x_act"].sum() == 5 and part["top_integrated_gradients"].sum() == 5
    assert (frame["position"] > 0).all()
    first = frame.loc[frame["prompt"] == 0]
    nodes = first.loc[:, ["position", "feature"]]
    again = ablation_effects(tiny_model, sae, prompts[:1], next_token_logprob(-2), nodes)
    np.testing.assert_allclose(first["ablation"], again, rtol=1e-5, atol=1e-6)
    summary = attribution_accuracy(frame)
    assert list(summary["method"]) == ["grad_x_act", "integrated_gradients"]
    assert (summary["nodes"] == 10).all() and summary["pearson"].between(-1, 1).all()


def test_the_summary_on_a_planted_frame():
    frame = pd.DataFrame({
        "prompt": [0, 0, 0, 1, 1, 1], "grad_x_act": [1.0, 2.0, 3.0, -1.0, 0.5, 2.0],
        "integrated_gradients": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "ablation": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
        "top_grad_x_act": True, "top_integrated_gradients": True,
    })  # fmt: skip
    summary = attribution_accuracy(frame).set_index("method")
    assert summary.loc["integrated_gradients", "pearson"] == 1.0
    assert summary.loc["grad_x_act", "sign_right"] == 5 / 6
