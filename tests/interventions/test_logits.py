"""saelab.interventions.logit_effect: the direct effect is the decoder direction through the
unembedding (the analysis logit lens), the total effect is the mean logit change of the
ablation where the feature fires, and the comparison numbers are computed by hand here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saelab
from saelab.analysis.feature import logit_lens
from saelab.extract.hooks import encode_activations, run_hooks
from saelab.interventions.ablation import ablate, as_token_batch, edit_mask
from saelab.interventions.logits import direct_logits, logit_effect, top_tokens

HOOK = "blocks.2.hook_resid_pre"
TEXTS = ["The cat sat on the mat.", "import numpy as np"]
FEATURE = 9  # fires on one of the two texts only


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=1, input_norm=100.0)


@pytest.fixture(scope="module")
def effect(tiny_model, sae):
    return logit_effect(tiny_model, sae, FEATURE, TEXTS, top=5)


def test_direct_effect_is_the_decoder_direction_through_the_unembedding(tiny_model, sae, effect):
    assert tiny_model.cfg.normalization_type == "RMSPre"  # ln_final folded into W_U: no weight to apply
    expected = (sae.W_dec[FEATURE] @ tiny_model.W_U).detach()
    torch.testing.assert_close(effect.direct, expected, atol=1e-5, rtol=1e-5)
    assert effect.direct_top.equals(top_tokens(tiny_model, effect.direct, 5))
    lens = logit_lens(tiny_model, sae, FEATURE, top=5)
    assert effect.direct_top["token_id"].tolist() == lens["token_id"].tolist()
    torch.testing.assert_close(direct_logits(tiny_model, sae, FEATURE), effect.direct)


def test_total_effect_is_what_the_feature_adds_where_it_fires(tiny_model, sae, effect):
    single = ablate(tiny_model, sae, [FEATURE], TEXTS, keep_logits=True)
    fired = single.activations[..., 0] != 0
    assert 0 < int(fired.sum()) == effect.n_positions
    assert single.logit_delta is not None
    expected = -single.logit_delta[fired].double().mean(dim=0).float()
    torch.testing.assert_close(effect.total, expected, atol=1e-4, rtol=0)
    promoted = effect.total_top[effect.total_top["direction"] == "promoted"]
    assert promoted["token_id"].tolist() == expected.topk(5).indices.tolist()


def test_comparison_numbers(effect):
    direct, total = effect.direct.double().numpy(), effect.total.double().numpy()
    assert effect.correlation == pytest.approx(np.corrcoef(direct, total)[0, 1], abs=1e-9)
    top = lambda v: set(np.argsort(-v)[:5].tolist())  # noqa: E731
    assert effect.overlap_promoted == len(top(direct) & top(total)) / 5
    assert effect.overlap_suppressed == len(top(-direct) & top(-total)) / 5


def test_frame_puts_the_two_side_by_side(effect):
    frame = effect.to_frame()
    assert frame["rank"].tolist() == [1, 2, 3, 4, 5]
    assert list(frame.columns[1:5]) == [
        "direct_promoted",
        "direct_promoted_logit",
        "total_promoted",
        "total_promoted_logit",
    ]
    assert frame["total_suppressed"].tolist() == effect.total_top["token"].iloc[5:].tolist()
    assert frame["direct_promoted_logit"].is_monotonic_decreasing


def test_bad_input_gets_clear_errors(tiny_model, sae, make_sae):
    with torch.no_grad():
        dead = make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=1, input_norm=100.0)
        dead.b_enc[FEATURE] = -1e6
    with pytest.raises(ValueError, match="never fires"):
        logit_effect(tiny_model, dead, FEATURE, TEXTS)
    with pytest.raises(ValueError, match="out of range"):
        logit_effect(tiny_model, sae, 32, TEXTS)
    with pytest.raises(ValueError, match="top"):
        logit_effect(tiny_model, sae, FEATURE, TEXTS, top=0)
    with pytest.raises(ValueError, match="empty"):
        logit_effect(tiny_model, sae, FEATURE, [])


def test_a_real_feature_on_real_text(model):
    """The bundled SAE at layer 20: direct and total effects are measured and finite."""
    sae = saelab.profiles.get("offline").load_sae("blocks.20.hook_resid_pre", device="cpu")
    texts = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n"]
    batch = as_token_batch(model, texts)
    hook = sae.cfg.metadata.hook_name
    x = run_hooks(model, [hook], batch.tokens, batch.attention_mask)[hook]
    with torch.no_grad():
        counts = (encode_activations(sae, x) * edit_mask(batch.attention_mask)[..., None]).ne(0).sum(dim=(0, 1))
    feature = int(counts.argmax())
    effect = logit_effect(model, sae, feature, texts)
    assert effect.n_positions == int(counts[feature]) > 0
    assert torch.isfinite(effect.total).all() and torch.isfinite(effect.direct).all()
    assert -1.0 <= effect.correlation <= 1.0
    assert len(effect.to_frame()) == 10
