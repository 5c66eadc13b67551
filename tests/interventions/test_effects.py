"""saelab.interventions.effects: many single-feature ablations at once give the same numbers
as one ``ablate`` per feature (padding, several text batches and row chunks included), the
pairs it skips have exactly zero effect, and its vectorised edit is the splice's."""

from __future__ import annotations

import pytest
import torch

from saelab.extract.hooks import encode_activations, run_hooks
from saelab.interventions.ablation import ablate, as_token_batch, edit_mask
from saelab.interventions.edits import set_features
from saelab.interventions.effects import ablation_deltas, feature_effects
from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.splice import splice_delta

HOOK = "blocks.2.hook_resid_pre"
TEXTS = ["The cat sat on the mat.", "import numpy as np", "Bonjour, je suis content de vous voir ici."]
D_SAE = 32
FEATURES = [0, 4, 8, 9, 14, 23]  # some fire on every text, some on a few, feature 0 on none


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    # input_norm sets how often the random features fire on the tiny model's residuals (~200):
    # at 250, FEATURES below fire as their comment says.
    return make_sae(tiny_model.cfg.d_model, D_SAE, HOOK, seed=1, input_norm=250.0)


@pytest.fixture(scope="module")
def effects(tiny_model, sae):
    # Two text batches (2 + 1 texts) and chunks of 5 rows (the 48 MiB logit budget), so rows of
    # several features and texts share a pass and a feature's texts fall in several passes.
    return feature_effects(tiny_model, sae, FEATURES, TEXTS, batch_size=2, max_logit_bytes=48 * 2**20, keep_logits=True)


@pytest.fixture(scope="module")
def one_by_one(tiny_model, sae):
    return [ablate(tiny_model, sae, [f], TEXTS, keep_logits=True) for f in FEATURES]


def test_many_features_at_once_equal_one_ablation_each(effects, one_by_one):
    ran = effects.ran
    assert ran.any() and not ran.all()  # some pairs skipped, some run
    assert ran[FEATURES.index(0)].sum() == 0
    assert effects.attention_mask.sum(dim=1).unique().numel() == 3  # padded rows
    for j, single in enumerate(one_by_one):
        torch.testing.assert_close(effects.loss_delta[j], single.loss_delta, atol=1e-4, rtol=0, equal_nan=True)
        torch.testing.assert_close(effects.activations[j], single.activations[..., 0])
    torch.testing.assert_close(effects.clean_loss, one_by_one[0].clean_loss, atol=1e-4, rtol=0, equal_nan=True)
    assert effects.loss_delta.nan_to_num().abs().max() > 1e-2


def test_skipped_pairs_have_exactly_zero_effect(effects, one_by_one):
    for j, single in enumerate(one_by_one):
        for text in torch.nonzero(~effects.ran[j]).flatten().tolist():
            assert effects.activations[j, text].eq(0).all()
            real = ~single.loss_delta[text].isnan()
            assert single.loss_delta[text][real].eq(0).all()  # the splice itself changes nothing there
            assert effects.loss_delta[j, text][real].eq(0).all()


def test_mean_logit_change_is_over_the_positions_where_the_feature_fired(effects, one_by_one):
    assert effects.mean_logit_delta is not None
    for j, single in enumerate(one_by_one):
        fired = single.activations[..., 0] != 0
        assert single.logit_delta is not None
        if not fired.any():
            assert effects.mean_logit_delta[j].isnan().all()
            continue
        expected = single.logit_delta[fired].double().mean(dim=0).float()
        torch.testing.assert_close(effects.mean_logit_delta[j], expected, atol=1e-4, rtol=0)


def test_summary_counts_and_means(effects):
    summary = effects.summary()
    assert summary["feature"].tolist() == FEATURES
    fired = effects.activations != 0
    assert summary["n_active"].tolist() == fired.sum(dim=(1, 2)).tolist()
    assert summary["n_texts"].tolist() == fired.any(dim=2).sum(dim=1).tolist()
    j = int(summary["n_active"].argmax())
    at = fired[j, :, :-1] & ~effects.loss_delta[j].isnan()
    assert summary["mean_delta_active"][j] == pytest.approx(float(effects.loss_delta[j][at].mean()), abs=1e-6)
    assert summary["mean_delta"][j] == pytest.approx(float(effects.loss_delta[j].nanmean()), abs=1e-6)
    assert summary["max_delta"][j] == pytest.approx(float(effects.loss_delta[j].nan_to_num(-1e9).max()))
    dead = FEATURES.index(0)
    assert summary["n_active"][dead] == 0 and summary["mean_delta"][dead] == 0


def test_tidy_frame(effects):
    frame = effects.to_frame()
    n_predictions = (effects.attention_mask.sum(dim=1) - 1)[None].expand_as(effects.ran)
    assert len(frame) == int(n_predictions[effects.ran].sum())
    assert len(effects.to_frame(include_skipped=True)) == int(n_predictions.sum())
    row = frame.iloc[3]
    f, t, p = FEATURES.index(int(row["feature"])), int(row["text"]), int(row["position"])
    assert row["loss_delta"] == pytest.approx(float(effects.loss_delta[f, t, p]))
    assert row["token"] == effects.token_strs[t][p] and row["next_token"] == effects.token_strs[t][p + 1]


def test_vectorised_edit_is_the_splice(tiny_model, sae):
    batch = as_token_batch(tiny_model, TEXTS)
    x = run_hooks(tiny_model, [HOOK], batch.tokens, batch.attention_mask)[HOOK]
    editable = edit_mask(batch.attention_mask)
    with torch.no_grad():
        feats = encode_activations(sae, x)
        base = sae.decode(feats)
    text_idx, columns, values = (
        torch.tensor([0, 2, 1, 2]),
        torch.tensor([4, 4, 9, 23]),
        torch.tensor([0.0, 0.0, 0.7, 0.0]),
    )
    deltas = ablation_deltas(sae, feats, base, editable, text_idx, columns, values)
    for r in range(4):
        t = int(text_idx[r])
        with torch.no_grad():
            expected = splice_delta(sae, x[t : t + 1], set_features([int(columns[r])], [float(values[r])]))[0]
        expected = torch.where(editable[t, :, None], expected, 0.0)
        torch.testing.assert_close(deltas[r], expected, atol=1e-5, rtol=0)
        changed = editable[t] & (feats[t, :, columns[r]] != values[r])
        assert deltas[r][~changed].eq(0).all() and deltas[r][changed].abs().amax(dim=-1).gt(0).all()


def test_mean_ablation_and_token_input(tiny_model, sae):
    """Mean mode runs every pair (every edited position moves); token rows with a mask work too."""
    mean = torch.linspace(0.0, 1.0, D_SAE)
    stats = FeatureStats(torch.ones(D_SAE), mean, torch.ones(D_SAE), 1, 1)
    batch = as_token_batch(tiny_model, TEXTS[:2])
    features = [1, 9]
    effects = feature_effects(
        tiny_model, sae, features, batch.tokens, attention_mask=batch.attention_mask, mode="mean", stats=stats
    )
    assert effects.ran.all()
    for j, f in enumerate(features):
        single = ablate(tiny_model, sae, [f], batch.tokens, attention_mask=batch.attention_mask, mode="mean",
                        stats=stats)  # fmt: skip
        torch.testing.assert_close(effects.loss_delta[j], single.loss_delta, atol=1e-4, rtol=0, equal_nan=True)
    assert effects.loss_delta[0].nan_to_num().abs().max() > 0  # feature 1 never fires, but its mean is written


def test_other_hooks_run_full_passes(tiny_model, make_sae):
    hook = "blocks.2.hook_mlp_out"
    sae = make_sae(tiny_model.cfg.d_model, 16, hook, seed=3, input_norm=30.0)
    batch = as_token_batch(tiny_model, TEXTS[:2])
    with torch.no_grad():
        feats = encode_activations(sae, run_hooks(tiny_model, [hook], batch.tokens, batch.attention_mask)[hook])
    counts = (feats * edit_mask(batch.attention_mask)[..., None]).ne(0).sum(dim=(0, 1))
    features = torch.argsort(counts, descending=True)[:3].tolist()
    effects = feature_effects(tiny_model, sae, features, TEXTS[:2])
    assert effects.ran.any()
    for j, f in enumerate(features):
        single = ablate(tiny_model, sae, [f], TEXTS[:2])
        torch.testing.assert_close(effects.loss_delta[j], single.loss_delta, atol=1e-4, rtol=0, equal_nan=True)
    assert effects.loss_delta.nan_to_num().abs().max() > 1e-4


def test_bad_input_gets_clear_errors(tiny_model, sae):
    with pytest.raises(ValueError, match="no features"):
        feature_effects(tiny_model, sae, [], TEXTS)
    with pytest.raises(ValueError, match="out of range"):
        feature_effects(tiny_model, sae, [-1], TEXTS)
    with pytest.raises(ValueError, match="batch_size"):
        feature_effects(tiny_model, sae, [1], TEXTS, batch_size=0)
    with pytest.raises(ValueError, match="mode"):
        feature_effects(tiny_model, sae, [1], TEXTS, mode="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        feature_effects(tiny_model, sae, [1], [])
    with pytest.raises(TypeError, match="single string"):
        feature_effects(tiny_model, sae, [1], "one text")
