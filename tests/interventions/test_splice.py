"""The error-preserving splice: no edit is the clean model, an edit moves it, hooks never leak."""

from __future__ import annotations

import pytest
import torch

from saelab import profiles
from saelab.interventions import add_to_features, set_features, spliced
from saelab.interventions.splice import splice_delta

HOOK = "blocks.3.hook_resid_pre"
TOKENS = torch.tensor([[1, 504, 3250, 314, 253, 1345, 28, 22], [1, 2683, 11, 1127, 2, 17, 3389, 7]])


def _hooks_left(model) -> int:
    return sum(len(hp.fwd_hooks) for hp in model.hook_dict.values())


def test_no_edit_gives_the_clean_logits_for_every_sae_of_the_suite(model):
    profile = profiles.get("offline")
    clean = model(TOKENS)
    for hook in profile.hooks:
        sae = profile.load_sae(hook, device="cpu")
        with spliced(model, sae) as installed:
            out = model(TOKENS)
        assert installed.calls == 1
        torch.testing.assert_close(out, clean, atol=1e-4, rtol=0)


def test_an_edit_changes_the_output_and_moves_the_activation_by_its_decoder_direction(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 64, HOOK, seed=1)
    store = {}

    def grab(act, hook):
        store["x"] = act.clone()

    with spliced(tiny_model, sae, add_to_features([5], [3.0])):
        edited = tiny_model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.4.hook_resid_pre", grab)])
    clean = tiny_model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.4.hook_resid_pre", grab)])
    assert (edited - clean).abs().max() > 1e-2
    # Recomputing the error from the edited reconstruction would cancel the edit; the splice
    # instead moves x by exactly 3 * W_dec[5] at every position but BOS.
    delta = splice_delta(sae, torch.randn(2, 8, tiny_model.cfg.d_model) * 50, add_to_features([5], [3.0]))
    torch.testing.assert_close(delta, (3.0 * sae.W_dec[5]).expand_as(delta), atol=1e-5, rtol=1e-5)


def test_bos_is_never_edited(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 64, HOOK, seed=2)
    acts = {}

    def grab(act, hook):
        acts[hook.name] = act.clone()

    hook_after = HOOK  # hooks registered after the splice see its output
    clean = tiny_model.run_with_cache(TOKENS, names_filter=[hook_after])[1][hook_after]
    with spliced(tiny_model, sae, set_features([0, 1], [9.0, 9.0])):
        tiny_model.run_with_hooks(TOKENS, fwd_hooks=[(hook_after, grab)])
    torch.testing.assert_close(acts[hook_after][:, 0], clean[:, 0], atol=0, rtol=0)
    assert (acts[hook_after][:, 1:] - clean[:, 1:]).abs().max() > 1e-3


def test_hooks_are_removed_even_when_the_block_raises(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 16, HOOK)
    before = _hooks_left(tiny_model)
    with pytest.raises(RuntimeError, match="boom"), spliced(tiny_model, sae, add_to_features([1], [1.0])):
        tiny_model(TOKENS[:, :3])
        raise RuntimeError("boom")
    assert _hooks_left(tiny_model) == before
    torch.testing.assert_close(tiny_model(TOKENS), tiny_model(TOKENS))


def test_an_sae_for_a_hook_the_model_lacks_is_refused(tiny_model, make_sae):
    sae = make_sae(tiny_model.cfg.d_model, 16, "blocks.99.hook_resid_pre")
    with pytest.raises(ValueError, match="only 30 layers"), spliced(tiny_model, sae):
        pass


def test_an_edit_that_changes_the_shape_is_refused(make_sae):
    sae = make_sae(32, 16, HOOK)
    with pytest.raises(ValueError, match="keep the features' shape"):
        splice_delta(sae, torch.randn(1, 3, 32), lambda f: f[..., :8])
