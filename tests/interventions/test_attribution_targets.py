"""Each method against its own target: integrated gradients' completeness against patching the
whole hook to its baseline, and one node's own-path IG against that node's ablation. Tiny
model and random SAEs at late hooks; one check on the real model and its suite SAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saelab
from saelab.extract.tokens import tokenize
from saelab.interventions import _gradients as G
from saelab.interventions.attribution import ablation_effects, attribute
from saelab.interventions.attribution_check import prompts_with_next_token
from saelab.interventions.attribution_targets import COMPLETENESS_COLUMNS, ig_completeness, node_path_ig
from saelab.interventions.metrics import next_token_logprob

HOOKS = ("blocks.26.hook_resid_pre", "blocks.28.hook_resid_pre")
TEXTS = ["The cat sat on the mat and looked", "x = 1\ny = x + 2\nprint", "Hello there"]
LOGPROB = next_token_logprob(-2)


def _centred_saes(tiny_model, make_sae):
    """Random SAEs whose decode(0) is the mean activation, as a trained SAE's ``b_dec`` is
    (the suite's are 108-498 in norm): IG's baseline is then an ordinary residual."""
    saes = [make_sae(tiny_model.cfg.d_model, 24, hook, seed=i) for i, hook in enumerate(HOOKS)]
    tokens = torch.tensor(tokenize(tiny_model, ["A quick brown fox jumps over the lazy dog while the cat sleeps."]).ids)
    acts = G.clean_activations(tiny_model, list(HOOKS), tokens)
    with torch.no_grad():
        for sae, hook in zip(saes, HOOKS, strict=True):
            sae.b_dec.copy_(acts[hook][0, 1:].mean(dim=0))
    return saes


@pytest.fixture(scope="module")
def saes(tiny_model, make_sae):
    return _centred_saes(tiny_model, make_sae)


def test_ig_sums_match_the_patched_hook_within_five_percent(tiny_model, saes):
    frame = ig_completeness(tiny_model, saes, TEXTS, lambda row: LOGPROB, steps=10)
    assert list(frame.columns) == COMPLETENESS_COLUMNS
    assert list(frame["prompt"]) == [0, 0, 1, 1, 2, 2] and list(frame["hook"]) == [*HOOKS] * 3
    assert (frame["patched_change"].abs() > 1e-3).all()  # a real change, so the relative error means something
    assert (frame["relative_error"] < 0.05).all()


def test_rows_that_miss_completeness_are_refined_until_they_add_up(tiny_model, saes):
    sae = saes[0]
    batch = torch.tensor(tokenize(tiny_model, TEXTS[:1]).ids).expand(2, -1)
    with pytest.warns(UserWarning, match="still miss completeness at 1 steps"):
        fixed = attribute(tiny_model, sae, batch, LOGPROB, method="integrated_gradients", steps=1, max_steps=1,
                          rtol=0.001)  # fmt: skip
    assert fixed.completeness is not None and not fixed.completeness["complete"].any()  # one step is not enough
    refined = attribute(tiny_model, sae, batch, LOGPROB, method="integrated_gradients", steps=1, max_steps=64,
                        rtol=0.001)  # fmt: skip
    check = refined.completeness
    assert check is not None and check["complete"].all() and (check["steps"] > 1).all()
    sums = refined.frame.groupby("row")["attribution"].sum().to_numpy()
    np.testing.assert_allclose(sums, check["ig_sum"].to_numpy(), rtol=1e-4)  # the frame is what was checked
    assert (check["abs_error"] <= np.maximum(0.001 * check["patched_change"].abs(), 0.005)).all()
    assert (check["abs_error"] < fixed.completeness["abs_error"]).all()
    # The two rows are the same prompt: refined alike, to the same attributions.
    assert check["steps"].nunique() == 1
    np.testing.assert_allclose(check["ig_sum"].to_numpy(), check["ig_sum"].iloc[0], rtol=1e-5)


def test_the_check_catches_a_path_through_the_origin(tiny_model, make_sae):
    # decode(0) = 0: the path ends at x = 0, where every block's RMSNorm (x / |x|) is singular,
    # so the integrand blows up near alpha = 0 and no number of steps is complete: the rows
    # are refined to max_steps, reported incomplete and warned about.
    saes = [make_sae(tiny_model.cfg.d_model, 24, hook, seed=i) for i, hook in enumerate(HOOKS)]
    with pytest.warns(UserWarning, match="still miss completeness at 20 steps"):
        frame = ig_completeness(tiny_model, saes, TEXTS[:2], lambda row: LOGPROB, steps=10, max_steps=20)
    assert (frame["relative_error"] > 0.05).any()
    assert (frame.loc[~frame["complete"], "steps"] == 20).all() and not frame["complete"].all()


@pytest.mark.filterwarnings("ignore:integrated gradients")  # a fixed, coarse quadrature on purpose
def test_the_patched_change_is_the_hook_at_decode_zero_but_at_bos(tiny_model, saes):
    sae, hook = saes[0], HOOKS[0]
    tokens = torch.tensor(tokenize(tiny_model, TEXTS[:1]).ids)
    frame = ig_completeness(tiny_model, sae, tokens, lambda row: LOGPROB, steps=2, max_steps=2)

    def baseline(x, hook=None):  # noqa: ARG001
        out = x.clone()
        out[:, 1:] = sae.decode(torch.zeros(1, sae.cfg.d_sae))
        return out

    with torch.no_grad():
        clean = LOGPROB(tiny_model(tokens), tokens)
        patched = LOGPROB(tiny_model.run_with_hooks(tokens, fwd_hooks=[(hook, baseline)]), tokens)
    assert frame["clean"].iloc[0] == pytest.approx(float(clean), abs=1e-4)
    assert frame["patched_change"].iloc[0] == pytest.approx(float(clean - patched), rel=1e-4, abs=1e-5)
    ig = attribute(tiny_model, sae, tokens, LOGPROB, method="integrated_gradients", steps=2, max_steps=2)
    assert frame["ig_sum"].iloc[0] == pytest.approx(float(ig.frame["attribution"].sum()), rel=1e-5)


def test_one_nodes_own_path_converges_to_its_ablation(tiny_model, saes):
    sae = saes[1]
    tokens = torch.tensor(tokenize(tiny_model, TEXTS[:1]).ids)
    nodes = attribute(tiny_model, sae, tokens, LOGPROB).top(8).loc[:, ["position", "feature"]]
    nodes.loc[len(nodes)] = (3, -1)  # and one error node
    truth = ablation_effects(tiny_model, sae, tokens, LOGPROB, nodes)
    coarse = node_path_ig(tiny_model, sae, tokens, LOGPROB, nodes, steps=1)
    fine = node_path_ig(tiny_model, sae, tokens, LOGPROB, nodes, steps=16, batch_size=20)
    assert np.abs(fine - truth).max() <= np.abs(coarse - truth).max() + 1e-6
    np.testing.assert_allclose(fine, truth, rtol=0.02, atol=1e-4)


def test_node_path_ig_refuses_bos_and_bad_steps(tiny_model, saes):
    tokens = torch.tensor(tokenize(tiny_model, TEXTS[:1]).ids)
    with pytest.raises(ValueError, match="BOS"):
        node_path_ig(tiny_model, saes[0], tokens, LOGPROB, [(0, 1)])
    with pytest.raises(ValueError, match="steps"):
        node_path_ig(tiny_model, saes[0], tokens, LOGPROB, [(1, 1)], steps=0)
    with pytest.raises(ValueError, match="one prompt"):
        node_path_ig(tiny_model, saes[0], tokens.expand(2, -1), LOGPROB, [(1, 1)])


def test_completeness_on_the_real_model_and_its_suite_sae(model):
    # blocks.20, where 10 steps are within 1% on most of the bench's prompts (refined where not)
    hook = "blocks.20.hook_resid_pre"
    sae = saelab.profiles.get("offline").load_sae(hook, device="cpu")
    prompts = prompts_with_next_token(model, ["The cat sat on the mat and looked at the dog.",
                                              "def add(a, b):\n    return a + b\n\nprint(add"], 8)  # fmt: skip
    frame = ig_completeness(model, sae, prompts, lambda row: LOGPROB, steps=10)
    assert (frame["relative_error"] < 0.05).all(), frame
    assert G.sae_dict(model, sae)  # the suite SAE fits the model
