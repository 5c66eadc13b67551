"""saelab.interventions.embedding_attribution: gradient x embedding and occlusion on a planted
feature with a known answer, occlusion against a one-token-at-a-time reference, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab.extract.hooks import encode_activations
from saelab.extract.tokens import tokenize
from saelab.interventions.embedding_attribution import token_attribution

TEXT = "The quick brown fox jumps over"
POSITION = 4  # " fox" (BOS is 0)


@pytest.fixture(scope="module")
def ids(tiny_model):
    return tokenize(tiny_model, [TEXT]).ids[0]


@pytest.fixture(scope="module")
def planted(tiny_model, make_sae, ids):
    """At blocks.0.hook_resid_pre the activation is the token embedding alone (SmolLM2's positions
    are rotary), so feature 3 = relu(e . w), with w along the embedding of the token at
    POSITION and no biases, depends on that token only and is linear in it while active."""
    sae = make_sae(tiny_model.cfg.d_model, 8, "blocks.0.hook_resid_pre", seed=5)
    embedding = tiny_model.W_E[ids[POSITION]].detach()
    with torch.no_grad():
        sae.b_enc.zero_()
        sae.W_enc[:, 3] = embedding / embedding.norm() ** 2 * 2.0  # f = 2 on the clean text
    return sae


def test_planted_feature_is_driven_by_its_own_token_only(tiny_model, planted):
    result = token_attribution(tiny_model, planted, TEXT, 3, POSITION)
    assert result.activation == pytest.approx(2.0, rel=1e-5)
    assert list(result.frame["position"]) == list(range(1, POSITION + 1))
    assert result.tokens[POSITION] == " fox" and list(result.frame["token"]) == result.tokens[1:]
    expected = np.array([0.0] * (POSITION - 1) + [2.0])
    # Zeroing the token's embedding removes the feature exactly (relu(0 . w) = 0), and the
    # feature is linear in the embedding, so both scores are exact.
    np.testing.assert_allclose(result.frame["occlusion"], expected, atol=1e-5)
    np.testing.assert_allclose(result.frame["gradient_x_embedding"], expected, atol=1e-5)
    assert result.pearson == pytest.approx(1.0) and result.spearman == pytest.approx(1.0)


def test_mean_baseline_replaces_the_embedding_by_the_average_token(tiny_model, planted):
    result = token_attribution(tiny_model, planted, TEXT, 3, POSITION, baseline="mean")
    w = planted.W_enc[:, 3].detach()
    mean = tiny_model.W_E.detach().mean(dim=0)
    occluded = torch.relu(mean @ w).item()
    assert result.frame["occlusion"].iloc[-1] == pytest.approx(2.0 - occluded, abs=1e-5)
    assert result.frame["gradient_x_embedding"].iloc[-1] == pytest.approx(2.0 - float(mean @ w), abs=1e-5)


def test_occlusion_matches_removing_one_token_at_a_time(tiny_model, make_sae, ids):
    sae = make_sae(tiny_model.cfg.d_model, 16, "blocks.3.hook_resid_pre", seed=6, bias=0.0)
    hook = "blocks.3.hook_resid_pre"
    tokens = torch.tensor([ids[: POSITION + 1]])
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=4)
    feature = int(encode_activations(sae, cache[hook])[0, POSITION].detach().argmax())
    result = token_attribution(tiny_model, sae, TEXT, feature, POSITION)
    for q in range(1, POSITION + 1):

        def blank(embed, hook=None, q=q):
            out = embed.clone()
            out[0, q] = 0
            return out

        with torch.no_grad(), tiny_model.hooks(fwd_hooks=[("hook_embed", blank)]):
            _, cache = tiny_model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=4)
        occluded = encode_activations(sae, cache[hook])[0, POSITION, feature].item()
        assert result.frame["occlusion"].iloc[q - 1] == pytest.approx(result.activation - occluded, abs=1e-4)
    assert result.activation > 0
    assert -1 <= result.pearson <= 1 and -1 <= result.spearman <= 1
    assert all(not point.fwd_hooks for point in tiny_model.hook_dict.values())


def test_bad_input_gets_clear_errors(tiny_model, make_sae, planted):
    with pytest.raises(ValueError, match="feature 8 is out of range"):
        token_attribution(tiny_model, planted, TEXT, 8, POSITION)
    with pytest.raises(ValueError, match="BOS"):
        token_attribution(tiny_model, planted, TEXT, 3, 0)
    with pytest.raises(ValueError, match="position 40 is out of range"):
        token_attribution(tiny_model, planted, TEXT, 3, 40)
    with pytest.raises(ValueError, match="empty"):
        token_attribution(tiny_model, planted, "", 3, 1)
    with pytest.raises(ValueError, match="does not exist in model"):
        token_attribution(tiny_model, make_sae(tiny_model.cfg.d_model, 8, "blocks.99.hook_resid_pre"), TEXT, 3, 1)
    with pytest.raises(ValueError, match="baseline must be one of"):
        token_attribution(tiny_model, planted, TEXT, 3, 1, baseline="noise")  # type: ignore[arg-type]
