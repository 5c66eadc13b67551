"""saelab.interventions.ablation: zero and mean-ablation through the splice, on the tiny model
with small random SAEs. Checked against a brute-force reference (a full forward pass with a
hand-written hook), on planted dead features (exactly no effect), and for BOS and padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saelab.interventions import ablation
from saelab.interventions.ablation import ablate, edit_mask
from saelab.interventions.feature_scale import FeatureStats

HOOK = "blocks.2.hook_resid_pre"
TEXTS = ["The cat sat on the mat.", "import numpy as np", "Bonjour, je suis content de vous voir ici."]
D_SAE = 32


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, D_SAE, HOOK, seed=1, input_norm=100.0)


@pytest.fixture(scope="module")
def tokens(tiny_model):
    """One text, no padding: BOS at position 0."""
    toks = tiny_model.to_tokens(TEXTS[2])
    assert int(toks[0, 0]) == tiny_model.tokenizer.bos_token_id
    return toks


def reference_losses(model, sae, tokens, shift):
    """Next-token losses of a full forward pass whose hook adds ``shift(x, f)`` at every position
    but 0: the ablation written out by hand."""

    def hook_fn(x, hook):
        f = sae.encode(x)
        out = x + shift(x, f)
        out[:, 0] = x[:, 0]
        return out

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(sae.cfg.metadata.hook_name, hook_fn)])
        clean = model(tokens)
    nll = lambda lg: -F.log_softmax(lg.float(), -1)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)  # noqa: E731
    return nll(clean), nll(logits)


def active_features(model, sae, tokens):
    """Features active somewhere after BOS, most active first."""
    from saelab.extract.hooks import encode_activations, run_hooks

    f = encode_activations(sae, run_hooks(model, [HOOK], tokens)[HOOK])[0, 1:]
    counts = (f > 0).sum(dim=0)
    return [int(i) for i in torch.argsort(counts, descending=True) if counts[i] > 0]


def test_zero_ablation_matches_a_hand_written_hook(tiny_model, sae, tokens):
    feature = active_features(tiny_model, sae, tokens)[0]
    result = ablate(tiny_model, sae, [feature], tokens)
    clean, ref = reference_losses(tiny_model, sae, tokens, lambda x, f: -f[..., feature, None] * sae.W_dec[feature])
    torch.testing.assert_close(result.clean_loss, clean, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.ablated_loss, ref, atol=1e-4, rtol=0)
    assert result.loss_delta.abs().max() > 1e-3  # the feature does something here
    with torch.no_grad():
        expected = sae.encode(tiny_model(tokens, stop_at_layer=2))[0, 1:, feature]
    torch.testing.assert_close(result.activations[0, 1:, 0], expected)


def test_several_features_are_ablated_together(tiny_model, sae, tokens):
    features = active_features(tiny_model, sae, tokens)[:3]
    result = ablate(tiny_model, sae, features, tokens)
    together = lambda x, f: -(f[..., features] @ sae.W_dec[features])  # noqa: E731
    _, ref = reference_losses(tiny_model, sae, tokens, together)
    torch.testing.assert_close(result.ablated_loss, ref, atol=1e-4, rtol=0)
    assert result.activations.shape == (1, tokens.shape[1], 3)


def test_mean_ablation_writes_the_statistics_mean(tiny_model, sae, tokens, monkeypatch):
    feature = active_features(tiny_model, sae, tokens)[0]
    mean = torch.zeros(D_SAE)
    mean[feature] = 3.0
    stats = FeatureStats(typical_max=torch.ones(D_SAE), mean=mean, frequency=torch.ones(D_SAE), n_texts=1, n_tokens=1)
    measured = []
    monkeypatch.setattr(ablation, "feature_stats", lambda model, sae: measured.append(1) or stats)
    result = ablate(tiny_model, sae, [feature], tokens, mode="mean", stats=stats)
    assert measured == []
    shift = lambda x, f: (3.0 - f[..., feature, None]) * sae.W_dec[feature]  # noqa: E731
    _, ref = reference_losses(tiny_model, sae, tokens, shift)
    torch.testing.assert_close(result.ablated_loss, ref, atol=1e-4, rtol=0)
    assert result.values.tolist() == [3.0]
    # Without stats they are measured (and cached) on the labelled dataset.
    assert ablation.ablation_values(tiny_model, sae, [feature], "mean", None).tolist() == [3.0]
    assert measured == [1]


def test_a_feature_that_never_fires_changes_nothing_exactly(tiny_model, make_sae):
    dead = make_sae(tiny_model.cfg.d_model, D_SAE, HOOK, seed=1, input_norm=100.0)
    with torch.no_grad():
        dead.b_enc[5] = -1e6
    result = ablate(tiny_model, dead, [5], TEXTS, keep_logits=True)
    real = ~result.loss_delta.isnan()
    assert real.sum() > 10
    assert (result.loss_delta[real] == 0).all()
    assert result.logit_delta is not None
    assert (result.logit_delta[result.attention_mask.bool()] == 0).all()
    assert result.logit_delta[~result.attention_mask.bool()].isnan().all()


@pytest.fixture(scope="module")
def together(tiny_model, sae):
    """Features 4 and 8 ablated together on three texts of different lengths."""
    return ablate(tiny_model, sae, [4, 8], TEXTS)


def test_bos_and_pads_are_never_edited_and_padding_changes_nothing(tiny_model, sae, together):
    lengths = together.attention_mask.sum(dim=1)
    assert lengths.tolist() == sorted(set(lengths.tolist()), key=lengths.tolist().index)  # three lengths
    assert int(lengths.max()) == together.tokens.shape[1] > int(lengths.min())
    assert not together.edited[:, 0].any()
    assert not together.edited[~together.attention_mask.bool()].any()
    assert (together.edited.sum(dim=1) == lengths - 1).all()
    for row in torch.nonzero(lengths < together.tokens.shape[1]).flatten().tolist():  # the padded rows
        alone = ablate(tiny_model, sae, [4, 8], [TEXTS[row]])
        n = int(lengths[row])
        torch.testing.assert_close(together.loss_delta[row, : n - 1], alone.loss_delta[0], atol=1e-4, rtol=0)
        assert together.loss_delta[row, n - 1 :].isnan().all()
    assert together.loss_delta[:, 0].abs().max() < 1e-6  # the prediction made at BOS cannot change
    assert together.loss_delta.nan_to_num().abs().max() > 1e-3


def test_left_padded_tokens_skip_each_rows_own_bos(tiny_model, sae, together):
    lengths = together.attention_mask.sum(dim=1)
    width = together.tokens.shape[1]
    tokens, mask = torch.zeros_like(together.tokens), torch.zeros_like(together.attention_mask)
    for row, n in enumerate(lengths.tolist()):
        tokens[row, width - n :] = together.tokens[row, :n]
        mask[row, width - n :] = 1
    left = ablate(tiny_model, sae, [4, 8], tokens, attention_mask=mask)
    assert (edit_mask(mask).sum(dim=1) == lengths - 1).all()
    for row, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(
            left.loss_delta[row, width - n :], together.loss_delta[row, : n - 1], atol=1e-4, rtol=0
        )
    assert left.to_frame()["token"].tolist() == together.to_frame()["token"].tolist()


@pytest.mark.parametrize("hook", ["blocks.2.hook_mlp_out", "blocks.1.hook_resid_post"])
def test_other_hooks_match_the_hand_written_hook(tiny_model, make_sae, tokens, hook):
    """hook_mlp_out runs full passes; hook_resid_post resumes at the next block."""
    sae = make_sae(tiny_model.cfg.d_model, D_SAE, hook, seed=3, input_norm=30.0)
    with torch.no_grad():
        f = sae.encode(tiny_model.run_with_cache(tokens)[1][hook])[0, 1:]
    feature = int((f > 0).sum(dim=0).argmax())
    result = ablate(tiny_model, sae, [feature], tokens)
    _, ref = reference_losses(tiny_model, sae, tokens, lambda x, f: -f[..., feature, None] * sae.W_dec[feature])
    torch.testing.assert_close(result.ablated_loss, ref, atol=1e-4, rtol=0)
    assert result.loss_delta.abs().max() > 1e-4


def test_logits_are_kept_only_when_asked_and_match_the_losses(tiny_model, sae, tokens):
    plain = ablate(tiny_model, sae, [4], tokens)
    assert plain.logit_delta is None
    kept = ablate(tiny_model, sae, [4], tokens, keep_logits=True, max_logit_bytes=1)  # one row per chunk
    assert kept.logit_delta is not None and kept.logit_delta.shape == (1, tokens.shape[1], tiny_model.cfg.d_vocab)
    torch.testing.assert_close(kept.loss_delta, plain.loss_delta, equal_nan=True)
    assert kept.logit_delta[0, 0].abs().max() < 1e-5  # BOS's logits cannot move


def test_frame_has_one_row_per_real_token(together):
    result = together
    frame = result.to_frame()
    assert len(frame) == int(result.attention_mask.sum())
    assert list(frame.columns) == [
        "text", "position", "token", "next_token", "edited", "activation_4", "activation_8",
        "clean_loss", "ablated_loss", "loss_delta",
    ]  # fmt: skip
    first = frame[frame["text"] == 0]
    assert "".join(first["token"].iloc[1:]) == TEXTS[0]
    assert first["next_token"].iloc[0] == first["token"].iloc[1]
    assert not first["edited"].iloc[0] and first["edited"].iloc[1:].all()
    n = len(first)
    assert first["loss_delta"].iloc[-1] != first["loss_delta"].iloc[-1]  # NaN: the last token predicts nothing
    torch.testing.assert_close(torch.tensor(first["loss_delta"].to_numpy()[: n - 1]), result.loss_delta[0, : n - 1])
    assert result.mean_loss_delta == pytest.approx(float(result.loss_delta.nanmean()))


def test_bad_input_gets_clear_errors(tiny_model, sae, make_sae, tokens):
    with pytest.raises(ValueError, match="no features"):
        ablate(tiny_model, sae, [], tokens)
    with pytest.raises(ValueError, match="out of range"):
        ablate(tiny_model, sae, [D_SAE], tokens)
    with pytest.raises(ValueError, match="mode"):
        ablate(tiny_model, sae, [1], tokens, mode="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        ablate(tiny_model, sae, [1], [])
    with pytest.raises(ValueError, match="does not exist"):
        ablate(tiny_model, make_sae(tiny_model.cfg.d_model, 8, "blocks.99.hook_resid_pre"), [1], tokens)
    wrong = FeatureStats(torch.ones(3), torch.ones(3), torch.ones(3), 1, 1)
    with pytest.raises(ValueError, match="d_sae=3"):
        ablate(tiny_model, sae, [1], tokens, mode="mean", stats=wrong)
    with pytest.raises(ValueError, match="two positions"):
        ablate(tiny_model, sae, [1], tokens[:, :1])
    with pytest.raises(ValueError, match="attention_mask goes with token ids"):
        ablate(tiny_model, sae, [1], TEXTS, attention_mask=torch.ones(3, 4))
