"""The ground-truth check of attribution on a tiny setup: the frame's nodes, prompts of several
lengths numbered over the whole call, the list form against one call per prompt, and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab.extract.tokens import tokenize
from saelab.interventions.attribution import ablation_effects
from saelab.interventions.attribution_check import (
    RowMetric,
    attribution_accuracy,
    attribution_vs_ablation,
    length_batches,
    prompt_list,
    prompts_with_next_token,
)
from saelab.interventions.metrics import logit_diff, next_token_logprob

HOOK = "blocks.26.hook_resid_pre"  # late: runs resume from the hook, so the tests stay short
TEXTS = ["The cat sat on the mat and looked", "x = 1\ny = x + 2\nprint", "Hello there, friend", "The cat sat"]
LOGPROB = next_token_logprob(-2)
# The random SAEs here decode 0 to about 0, a path through RMSNorm's singularity that no number
# of IG steps makes complete; these tests compare estimates with ablations, not completeness.
pytestmark = pytest.mark.filterwarnings("ignore:integrated gradients:UserWarning")


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 24, HOOK, seed=9)


def _check(tiny_model, sae, prompts, metric_for=lambda row: LOGPROB, **kwargs):
    kwargs = {"top": 5, "steps": 3, "progress": False, **kwargs}
    return attribution_vs_ablation(tiny_model, sae, prompts, metric_for, **kwargs)


def test_top_nodes_of_both_methods_come_with_their_true_ablation_effect(tiny_model, sae):
    prompts = prompts_with_next_token(tiny_model, TEXTS[:2], 6)
    assert prompts.shape == (2, 7)
    frame = _check(tiny_model, sae, prompts)
    for _, part in frame.groupby("prompt"):
        assert part["top_grad_x_act"].sum() == 5 and part["top_integrated_gradients"].sum() == 5
    assert (frame["position"] > 0).all()
    first = frame.loc[frame["prompt"] == 0]
    again = ablation_effects(tiny_model, sae, prompts[:1], LOGPROB, first.loc[:, ["position", "feature"]])
    np.testing.assert_allclose(first["ablation"], again, rtol=1e-5, atol=1e-6)
    summary = attribution_accuracy(frame)
    assert list(summary["method"]) == ["grad_x_act", "integrated_gradients"]
    assert (summary["nodes"] == 10).all() and summary["pearson"].between(-1, 1).all()


def test_prompts_of_different_lengths_are_numbered_over_the_whole_call(tiny_model, sae):
    ids = tokenize(tiny_model, TEXTS).ids
    frame = _check(tiny_model, sae, [torch.tensor(row) for row in ids])
    assert sorted(frame["prompt"].unique()) == [0, 1, 2, 3]
    for i, part in frame.groupby("prompt"):
        assert part["position"].between(1, len(ids[int(i)]) - 1).all()
    # texts and plain lists of ids are the same prompts
    pd.testing.assert_frame_equal(_check(tiny_model, sae, TEXTS), frame)
    pd.testing.assert_frame_equal(_check(tiny_model, sae, ids), frame)


def test_the_list_form_equals_one_call_per_prompt(tiny_model, sae):
    def metric_for(row):  # each prompt's own metric: its last token against the one before
        return logit_diff(-2, int(row[0, -1]), int(row[0, -2]))

    ids = tokenize(tiny_model, TEXTS).ids
    together = _check(tiny_model, sae, ids, metric_for, batch_tokens=64)  # 5 to 9 nodes per ablation pass
    alone = [_check(tiny_model, sae, [row], metric_for).assign(prompt=i) for i, row in enumerate(ids)]
    pd.testing.assert_frame_equal(together, pd.concat(alone, ignore_index=True), rtol=1e-4, atol=1e-5)


def test_a_row_metric_reads_each_row_with_its_own_prompts_metric():
    prompts = [torch.tensor([0, 1, 2]), torch.tensor([0, 3, 4])]
    metric = RowMetric.build(prompts, lambda row: logit_diff(-1, int(row[0, -1]), 0))
    logits = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    # rows in the other order: each still gets its own prompt's metric
    value = metric(logits, torch.stack(prompts[::-1]))
    assert float(value) == (logits[0, -1, 4] - logits[0, -1, 0]) + (logits[1, -1, 2] - logits[1, -1, 0])
    with pytest.raises(KeyError):
        metric(logits, torch.tensor([[0, 9, 9], [0, 1, 2]]))


def test_length_batches_keep_one_length_per_batch_within_the_token_budget():
    prompts = [torch.zeros(n) for n in (5, 7, 5, 5, 7)]
    assert length_batches(prompts, 10) == [[0, 2], [3], [1], [4]]
    assert length_batches(prompts, 1) == [[0], [2], [3], [1], [4]]


def test_bad_prompts_get_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="no prompts"):
        prompt_list(tiny_model, [])
    with pytest.raises(TypeError, match="wrap a single text"):
        prompt_list(tiny_model, "The cat")
    with pytest.raises(ValueError, match="needs two"):
        prompt_list(tiny_model, [[1, 2, 3], [1]])
    with pytest.raises(ValueError, match="longer than the model's context"):
        prompt_list(tiny_model, [list(range(tiny_model.cfg.n_ctx + 1))])
    with pytest.raises(ValueError, match="longer than the model's context"):
        prompt_list(tiny_model, ["The cat", "word " * (tiny_model.cfg.n_ctx + 10)])  # refused, not cut
    with pytest.raises(ValueError, match="1-D integer"):
        prompt_list(tiny_model, [torch.ones(4)])
    with pytest.raises(ValueError, match=r"\[n, pos\]"):
        prompt_list(tiny_model, torch.ones(2, 2, 2, dtype=torch.long))


def test_the_summary_on_a_planted_frame():
    frame = pd.DataFrame({
        "prompt": [0, 0, 0, 1, 1, 1], "grad_x_act": [1.0, 2.0, 3.0, -1.0, 0.5, 2.0],
        "integrated_gradients": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0], "ablation": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
        "top_grad_x_act": True, "top_integrated_gradients": True,
    })  # fmt: skip
    summary = attribution_accuracy(frame).set_index("method")
    assert summary.loc["integrated_gradients", "pearson"] == 1.0
    assert summary.loc["grad_x_act", "sign_right"] == 5 / 6
