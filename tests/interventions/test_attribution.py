"""saelab.interventions.attribution and .metrics: the attribution frame, grad x act against
true ablation effects, integrated gradients' completeness, one pass for several hooks, hooks
removed on errors, and clear errors for bad input. Tiny model, tiny random SAEs at late
hooks (short runs resume from the hook)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from saelab.extract.hooks import encode_activations
from saelab.extract.tokens import token_strings, tokenize
from saelab.interventions import _gradients as G
from saelab.interventions.attribution import FRAME_COLUMNS, ablation_effects, attribute
from saelab.interventions.edits import set_features
from saelab.interventions.metrics import (
    check_scalar,
    logit_diff,
    next_token_logprob,
    next_token_loss,
    token_logprob,
)
from saelab.interventions.splice import spliced

HOOKS = ("blocks.26.hook_resid_pre", "blocks.28.hook_resid_pre")
PROMPT = "The cat sat on the mat and"
METRIC = next_token_logprob(-2)


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return torch.tensor(tokenize(tiny_model, [PROMPT]).ids)


@pytest.fixture(scope="module")
def saes(tiny_model, make_sae):
    d = tiny_model.cfg.d_model
    return [make_sae(d, 16, HOOKS[0], seed=1), make_sae(d, 24, HOOKS[1], seed=2)]


@pytest.fixture(scope="module")
def acts(tiny_model, tokens):
    return G.clean_activations(tiny_model, list(HOOKS), tokens)


@pytest.fixture(scope="module")
def both(tiny_model, saes, tokens):
    return attribute(tiny_model, saes, tokens, METRIC)


def _by_node(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["row", "hook", "position", "feature"])["attribution"].sort_index()


# --- metrics (no model) ---------------------------------------------------------------


def test_metrics_read_the_right_logits_and_sum_over_rows():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=gen)
    tokens = torch.tensor([[0, 3, 5, 1], [0, 2, 6, 4]])
    assert torch.isclose(logit_diff(-1, 3, 5)(logits, tokens), (logits[:, 3, 3] - logits[:, 3, 5]).sum())
    ce = F.cross_entropy(logits[:, 1], tokens[:, 2], reduction="sum")
    assert torch.isclose(next_token_loss(1)(logits, tokens), ce)
    assert torch.isclose(next_token_logprob(-3)(logits, tokens), -ce)
    assert torch.isclose(token_logprob(-1, 6)(logits, tokens), F.log_softmax(logits[:, 3], -1)[:, 6].sum())


def test_metrics_reject_positions_and_tokens_they_cannot_read():
    logits, tokens = torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no next token"):
        next_token_loss(-1)(logits, tokens)
    with pytest.raises(ValueError, match="position 3 is out of range"):
        logit_diff(3, 0, 1)(logits, tokens)
    with pytest.raises(ValueError, match="good_token must be a token id"):
        logit_diff(0, 5, 1)(logits, tokens)


def test_check_scalar_names_the_shape_it_got():
    assert check_scalar(torch.tensor(1.5)).item() == 1.5
    with pytest.raises(ValueError, match=r"metric must return a scalar tensor, got shape \(2,\)"):
        check_scalar(torch.zeros(2))
    with pytest.raises(ValueError, match="got float"):
        check_scalar(1.0)


# --- the frame -------------------------------------------------------------------------


def test_frame_lists_the_active_features_and_one_error_node_per_hook_and_position(tiny_model, saes, tokens, acts, both):
    frame = both.frame
    assert list(frame.columns) == FRAME_COLUMNS
    assert both.hooks == HOOKS and both.method == "grad_x_act" and both.steps == 1
    assert (frame["position"] > 0).all(), "BOS must never be attributed"
    n_pos = tokens.shape[1]
    strings = token_strings(tiny_model, tokens[0].tolist())
    for sae, hook in zip(saes, HOOKS, strict=True):
        errors = both.errors().query("hook == @hook")
        assert sorted(errors["position"]) == list(range(1, n_pos)) and (errors["feature"] == -1).all()
        feats = encode_activations(sae, acts[hook])[0].detach()
        expected = {(p, i) for p, i in (feats > 0).nonzero().tolist() if p > 0}
        rows = both.features().query("hook == @hook")
        assert set(zip(rows["position"], rows["feature"], strict=True)) == expected
        positions, features = rows["position"].tolist(), rows["feature"].tolist()
        np.testing.assert_allclose(rows["activation"], feats[positions, features].numpy(), rtol=1e-6)
        assert list(rows["token"]) == [strings[p] for p in rows["position"]]
    assert (both.features()["activation"] > 0).all()
    top = both.top(5)
    assert len(top) == 5 and top["attribution"].abs().is_monotonic_decreasing
    with torch.no_grad():
        clean = METRIC(G.forward_from(tiny_model, HOOKS[1], tokens, acts[HOOKS[1]]), tokens)
    assert both.metric == pytest.approx(float(clean), abs=1e-4)


def test_two_hooks_in_one_pass_give_each_hook_its_own_total_effects(tiny_model, saes, tokens, both):
    # The splice is the identity for values and gradients, so the earlier hook's gradients
    # are total derivatives through the model, exactly as when it is alone.
    for sae, hook in zip(saes, HOOKS, strict=True):
        alone = attribute(tiny_model, sae, tokens, METRIC).frame
        together = both.frame.loc[both.frame["hook"] == hook]
        pd.testing.assert_series_equal(_by_node(alone), _by_node(together), rtol=1e-4, atol=1e-6)


@pytest.mark.filterwarnings("ignore:integrated gradients")  # a fixed, coarse quadrature on purpose
def test_batch_rows_are_attributed_independently_with_any_chunking(tiny_model, saes, tokens):
    other = tokens.clone()
    other[0, 2] = tokens[0, 5]  # the same length, a different prompt
    batch = torch.cat([tokens, other])
    ig = dict(method="integrated_gradients", steps=2)
    together = attribute(tiny_model, saes[1], batch, METRIC, **ig, batch_tokens=3 * tokens.shape[1]).frame
    alone = attribute(tiny_model, saes[1], other, METRIC, **ig).frame.assign(row=1)
    pd.testing.assert_series_equal(_by_node(together.query("row == 1")), _by_node(alone), rtol=1e-4, atol=1e-6)


# --- against the true effects ----------------------------------------------------------


def test_ablation_effects_agree_with_the_splice(tiny_model, saes, tokens, acts, both):
    sae, hook = saes[1], HOOKS[1]
    (position, feature), error_position = both.top(1, hook=hook)[["position", "feature"]].to_numpy()[0], 3
    effects = ablation_effects(tiny_model, sae, tokens, METRIC, [(position, feature), (error_position, -1)])
    # A feature: the project's splice, editing that one position.
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[0, position] = True
    with torch.no_grad(), spliced(tiny_model, sae, set_features([int(feature)], [0.0])) as splice:
        ablated = METRIC(splice.run(tokens, edit_mask=mask), tokens)
    assert effects[0] == pytest.approx(both.metric - float(ablated), abs=2e-5)
    # The error node: x[p] becomes decode(f[p]).
    x = acts[hook]
    recon = sae.decode(encode_activations(sae, x)).detach()

    def drop_error(act, hook=None):
        out = act.clone()
        out[0, error_position] = recon[0, error_position]
        return out

    with torch.no_grad():
        ablated = METRIC(G.forward_from(tiny_model, hook, tokens, x, [(hook, drop_error)]), tokens)
    assert effects[1] == pytest.approx(both.metric - float(ablated), abs=2e-5)


def test_grad_x_act_equals_the_ablation_effect_where_the_model_is_locally_linear(tiny_model, make_sae, tokens):
    # A decoder 10x smaller than usual: removing a feature moves the residual by ~0.1% of its
    # norm, where the model is linear to well within the tolerance (float32 noise is ~1e-5).
    sae = make_sae(tiny_model.cfg.d_model, 16, HOOKS[0], seed=1)
    with torch.no_grad():
        sae.W_dec.mul_(0.1)
    result = attribute(tiny_model, sae, tokens, METRIC)
    nodes = result.top(6)
    effects = ablation_effects(tiny_model, sae, tokens, METRIC, nodes)
    scale = np.abs(effects).max()
    assert scale > 5e-4
    np.testing.assert_allclose(nodes["attribution"], effects, atol=0.03 * scale)


def test_integrated_gradients_are_complete_at_every_step(tiny_model, saes, tokens, acts):
    # Per alpha, the attributions of all nodes of a hook add up to d metric / d alpha along
    # the path x(alpha) = decode(alpha f) + alpha e, so their sum is the quadrature's
    # estimate of metric(clean) - metric(decode(0)); finite differences check it here, at
    # the schedule's points alpha = t**2 with weights 2t / steps.
    sae, hook, steps = saes[0], HOOKS[0], 3
    result = attribute(tiny_model, sae, tokens, METRIC, method="integrated_gradients", steps=steps, max_steps=steps)
    x = acts[hook]
    feats = encode_activations(sae, x).detach()
    error = x - sae.decode(feats).detach()
    h = 2e-3
    t = [(k + 0.5) / steps for k in range(steps)]
    alphas = torch.tensor([a**2 + s * h for a in t for s in (1, -1)])
    rows = x.repeat(len(alphas), 1, 1)
    with torch.no_grad():
        rows[:, 1:] = (sae.decode(alphas[:, None, None] * feats) + alphas[:, None, None] * error)[:, 1:]
        logits = G.forward_from(tiny_model, hook, tokens.expand(len(alphas), -1), rows)
    values = torch.stack([METRIC(logits[i : i + 1], tokens) for i in range(len(alphas))])
    derivative = (values[0::2] - values[1::2]) / (2 * h)
    weights = torch.tensor([2 * a / steps for a in t])
    assert weights.sum() == pytest.approx(1.0)
    expected = float((derivative * weights).sum())
    assert result.frame["attribution"].sum() == pytest.approx(expected, rel=0.01)


def test_grad_x_act_has_no_completeness_check(tiny_model, saes, tokens):
    assert attribute(tiny_model, saes[0], tokens, METRIC).completeness is None


# --- hooks and errors ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["grad_x_act", "integrated_gradients"])
def test_hooks_are_removed_when_the_metric_raises(tiny_model, saes, tokens, method):
    def broken(logits, tokens):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        attribute(tiny_model, saes, tokens, broken, method=method, steps=2)
    assert all(not point.fwd_hooks for point in tiny_model.hook_dict.values())


def test_bad_input_gets_clear_errors(tiny_model, make_sae, saes, tokens):
    with pytest.raises(ValueError, match="tokens are empty"):
        attribute(tiny_model, saes, torch.zeros(1, 0, dtype=torch.long), METRIC)
    with pytest.raises(ValueError, match="max_steps must be an integer >= steps"):
        attribute(tiny_model, saes, tokens, METRIC, method="integrated_gradients", steps=4, max_steps=2)
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"):
        attribute(tiny_model, saes, tokens, METRIC, method="integrated_gradients", rtol=-0.1)
    with pytest.raises(ValueError, match="at least one token after it"):
        attribute(tiny_model, saes, tokens[:, :1], METRIC)
    with pytest.raises(ValueError, match="empty"):
        attribute(tiny_model, saes, "   ", METRIC)
    with pytest.raises(ValueError, match=r"metric must return a scalar tensor, got shape \(1,\)"):
        attribute(tiny_model, saes, tokens, lambda logits, tokens: logits[:, -1, 0])
    with pytest.raises(ValueError, match="does not exist in model"):
        attribute(tiny_model, make_sae(tiny_model.cfg.d_model, 8, "blocks.99.hook_resid_pre"), tokens, METRIC)
    with pytest.raises(ValueError, match="method must be one of"):
        attribute(tiny_model, saes, tokens, METRIC, method="gradients")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        attribute(tiny_model, saes, tokens, METRIC, method="integrated_gradients", steps=0)
    with pytest.raises(ValueError, match="two SAEs read the same hook"):
        attribute(tiny_model, [saes[0], saes[0]], tokens, METRIC)
    with pytest.raises(ValueError, match="feature 99 is out of range"):
        ablation_effects(tiny_model, saes[0], tokens, METRIC, [(2, 99)])
    with pytest.raises(ValueError, match="BOS"):
        ablation_effects(tiny_model, saes[0], tokens, METRIC, [(0, 1)])
    assert all(not point.fwd_hooks for point in tiny_model.hook_dict.values())
