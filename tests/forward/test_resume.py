"""saelab.forward.resume: a run resumed from a hook gives the full forward pass's logits (all of
them, or those from a position on), at residual hooks (resumed with start_at_layer) and at other
hooks (the activation put in place), stops before the head when asked, lets the hook's own
fwd_hooks see the activation, and records gradients only when asked. Tiny model."""

from __future__ import annotations

import pytest
import torch

from saelab.extract.hooks import run_hooks
from saelab.extract.tokens import tokenize
from saelab.forward.resume import resume, unembed

TEXTS = ["The cat sat on the mat and", "import numpy as np"]
RESIDUAL_HOOKS = ["blocks.3.hook_resid_pre", "blocks.3.hook_resid_post", "blocks.29.hook_resid_post"]


@pytest.fixture(scope="module")
def batch(tiny_model):
    """Two right-padded rows and their mask."""
    tokenized = tokenize(tiny_model, TEXTS)
    width = max(len(ids) for ids in tokenized.ids)
    tokens = torch.zeros(len(TEXTS), width, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for r, ids in enumerate(tokenized.ids):
        tokens[r, : len(ids)], mask[r, : len(ids)] = torch.tensor(ids), 1
    return tokens, mask


@pytest.fixture(scope="module")
def full(tiny_model, batch):
    tokens, mask = batch
    with torch.no_grad():
        return tiny_model(tokens, attention_mask=mask)


@pytest.mark.parametrize("hook", [*RESIDUAL_HOOKS, "blocks.3.hook_mlp_out", "blocks.3.attn.hook_z"])
def test_resuming_with_the_clean_activation_gives_the_full_forward_pass(tiny_model, batch, full, hook):
    tokens, mask = batch
    x = run_hooks(tiny_model, [hook], tokens, mask)[hook]
    logits = resume(tiny_model, hook, x, tokens, attention_mask=mask)
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-4)
    later = resume(tiny_model, hook, x, tokens, attention_mask=mask, from_position=3)
    torch.testing.assert_close(later, full[:, 3:], rtol=1e-4, atol=1e-4)


def test_an_edited_activation_moves_the_logits_from_its_position_on(tiny_model, batch, full):
    tokens, mask = batch
    hook = "blocks.3.attn.hook_z"  # not residual: the run starts from the tokens
    x = run_hooks(tiny_model, [hook], tokens, mask)[hook].clone()
    x[:, 4] += 5.0
    logits = resume(tiny_model, hook, x, tokens, attention_mask=mask)
    torch.testing.assert_close(logits[:, :4], full[:, :4], rtol=1e-4, atol=1e-4)
    assert (logits[:, 4:] - full[:, 4:]).abs().amax() > 1e-2


def test_stop_at_layer_returns_the_residual_before_the_head(tiny_model, batch, full):
    tokens, mask = batch
    hook = RESIDUAL_HOOKS[0]
    x = run_hooks(tiny_model, [hook], tokens, mask)[hook]
    resid = resume(tiny_model, hook, x, tokens, attention_mask=mask, stop_at_layer=tiny_model.cfg.n_layers)
    assert resid.shape == (*tokens.shape, tiny_model.cfg.d_model)
    torch.testing.assert_close(unembed(tiny_model, resid), full, rtol=1e-4, atol=1e-4)
    # No activation: the whole model from the tokens.
    torch.testing.assert_close(resume(tiny_model, hook, None, tokens, attention_mask=mask), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hook", RESIDUAL_HOOKS[:2])
def test_hooks_at_the_resumed_hook_see_and_may_replace_the_activation(tiny_model, batch, hook):
    tokens, mask = batch
    x = run_hooks(tiny_model, [hook], tokens, mask)[hook]
    seen = []

    def double(act, hook=None):
        seen.append(act)
        return act * 2

    doubled = resume(tiny_model, hook, x, tokens, attention_mask=mask, fwd_hooks=[(hook, double)])
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], x)
    torch.testing.assert_close(doubled, resume(tiny_model, hook, x * 2, tokens, attention_mask=mask))
    assert all(not point.fwd_hooks for point in tiny_model.hook_dict.values())


def test_gradients_flow_only_when_asked(tiny_model, batch):
    tokens, _ = batch
    hook = RESIDUAL_HOOKS[0]
    x = run_hooks(tiny_model, [hook], tokens)[hook].clone().requires_grad_()
    logits = resume(tiny_model, hook, x, tokens, grad=True, from_position=-1)
    (grad,) = torch.autograd.grad(logits[:, -1, 7].sum(), [x])
    assert grad[:, -1].abs().sum() > 0
    with torch.no_grad():  # asked for, the graph is recorded even inside no_grad (attribution's leaves)
        assert resume(tiny_model, hook, x, tokens, grad=True).requires_grad
    plain = resume(tiny_model, hook, x, tokens)
    assert plain.is_inference() and not plain.requires_grad


def test_a_hook_that_is_not_the_residual_stream_needs_the_tokens(tiny_model, batch):
    tokens, mask = batch
    x = run_hooks(tiny_model, ["blocks.3.hook_mlp_out"], tokens, mask)["blocks.3.hook_mlp_out"]
    with pytest.raises(ValueError, match="needs the tokens"):
        resume(tiny_model, "blocks.3.hook_mlp_out", x)
