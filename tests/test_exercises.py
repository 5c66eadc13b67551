"""The notebooks' exercises: a correct answer passes its check, and each usual mistake gets
the hint written for it. On the tiny model with a small random SAE."""

from __future__ import annotations

import pytest
import torch

from saelab.exercises import check_ce_loss_recovered, check_masked_mean, padded_features

HOOK = "blocks.4.hook_resid_pre"
TEXTS = ["Hi!", "def add(a, b):\n    return a + b", "The committee approved the budget on Tuesday after a long debate."]


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 64, HOOK, seed=5, input_norm=30.0)


@pytest.fixture(scope="module")
def padded(tiny_model, sae):
    return padded_features(tiny_model, sae, TEXTS)


def masked_mean(features, mask):  # the notebook's solution
    keep = mask[..., None].float()
    return (features * keep).sum(dim=1) / keep.sum(dim=1)


def test_the_padded_batch_masks_bos_and_pads_and_keeps_the_given_order(tiny_model, padded):
    lengths = [len(tiny_model.to_tokens(t)[0]) for t in TEXTS]  # BOS included
    assert padded.features.shape == (len(TEXTS), max(lengths), 64)
    assert padded.mask.sum(dim=1).tolist() == [n - 1 for n in lengths]
    assert not padded.mask[:, 0].any()
    # The pads of the short text hold features too, so averaging them in changes its mean.
    assert padded.features[0, lengths[0]:].abs().sum() > 0


def test_a_correct_masked_mean_passes(padded):
    check = check_masked_mean(masked_mean, padded)
    assert check.passed and str(check).startswith("✓")


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda f, m: f.mean(dim=1), "pads and BOS included"),
        (lambda f, m: (f * m[..., None]).sum(dim=1) / m.shape[1], "not by the padded width"),
        (lambda f, m: (f * m[..., None]).sum(dim=1), "masked sum"),
        (lambda f, m: (f * m[..., None]).sum(dim=0), "[batch, d_sae]"),
        (lambda f, m: masked_mean(f, m).tolist(), "return a tensor"),
        (lambda f, m: masked_mean(f, m) * 1.01, "furthest off"),
    ],
)
def test_each_usual_mistake_gets_its_hint(padded, wrong, hint):
    check = check_masked_mean(wrong, padded)
    assert not check.passed and str(check).startswith("✗") and hint in str(check)


def test_the_check_cannot_be_passed_by_editing_its_inputs(padded):
    def vandal(features, mask):
        features.zero_()
        mask.zero_()
        return torch.zeros(features.shape[0], features.shape[2])

    assert not check_masked_mean(vandal, padded).passed
    assert check_masked_mean(masked_mean, padded).passed  # the inputs it was given are copies


def ce_loss_recovered(model, sae, hook, tokens, *, splice_bos=False):  # the notebook's solution
    def splice(act, hook):
        out = act.clone()
        first = 0 if splice_bos else 1
        out[:, first:] = sae.decode(sae.encode(act[:, first:]))
        return out

    def zero(act, hook):
        return torch.zeros_like(act)

    def loss(hooks):
        return model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)[:, 1:].mean()

    clean, spliced, zeroed = loss([]), loss([(hook, splice)]), loss([(hook, zero)])
    return float((zeroed - spliced) / (zeroed - clean))


@pytest.fixture(scope="module")
def tokens(tiny_model):
    return tiny_model.to_tokens(TEXTS[1:])[:, :12]  # both rows have at least 12 tokens: no padding


def test_ce_loss_recovered_with_two_hooks_matches_the_library(tiny_model, sae, tokens):
    check = check_ce_loss_recovered(ce_loss_recovered, tiny_model, sae, tokens)
    assert check.passed, str(check)


def test_a_wrong_ce_loss_recovered_shows_the_library_losses(tiny_model, sae, tokens):
    def spliced_bos(model, sae, hook, tokens):
        return ce_loss_recovered(model, sae, hook, tokens, splice_bos=True)

    check = check_ce_loss_recovered(spliced_bos, tiny_model, sae, tokens)
    assert not check.passed and "clean" in str(check) and "every position but BOS" in str(check)
    assert "one number" in str(check_ce_loss_recovered(lambda *args: [0.9], tiny_model, sae, tokens))
