"""saelab.extract.hooks: activations from one forward pass that stops as early as the hook
allows, equal to run_with_cache's."""

import torch

import saelab
from saelab.extract import hook_activations
from tests.extract._helpers import HOOK, LONG_TEXTS


def test_hook_activations_match_run_with_cache(tiny_model):
    tokens = tiny_model.to_tokens(LONG_TEXTS[0][:200])
    mask = torch.ones_like(tokens)
    hooks = ("blocks.0.hook_resid_pre", "blocks.7.hook_resid_pre", "blocks.3.hook_mlp_out", "blocks.4.hook_resid_post")
    for hook in hooks:
        _, cache = tiny_model.run_with_cache(tokens, names_filter=[hook])
        torch.testing.assert_close(hook_activations(tiny_model, hook, tokens, mask), cache[hook])


def test_later_blocks_never_run(tiny_model, sae):
    def boom(act, hook):
        raise AssertionError(f"{hook.name} ran, but extraction at {HOOK} should stop before it")

    tiny_model.add_hook("blocks.20.hook_attn_out", boom)
    try:
        saelab.extract_features(tiny_model, sae, ["Only the first twenty blocks run."])
    finally:
        tiny_model.reset_hooks()
