"""saelab.evals.harness: evaluate_sae. A random SAE loses loss on the real model; on the tiny
one, padding, streaming, chunking and either activation path give the same numbers, results
compare side by side, and l0, mse, explained_variance and feature_density agree with
SAELens's ``get_sparsity_and_variance_metrics`` on a stub store."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens.evals import get_sparsity_and_variance_metrics
from sae_lens.training.activation_scaler import ActivationScaler

from saelab import evals
from saelab.evals.ce_loss import MissingBOSWarning
from tests.evals._helpers import HOOK, N_POS, TEXTS, StubStore, identity_sae


def test_random_sae_loses_loss_on_the_real_model(model, make_sae):
    """A trained model has loss to lose (a random one predicts no better than the zero ablation)."""
    tokens = model.to_tokens(TEXTS)[:, :N_POS]
    result = evals.evaluate_sae(model, make_sae(model.cfg.d_model, 64, HOOK, seed=2, input_norm=30.0), [tokens],
                                progress=False)  # fmt: skip
    assert result.l0 > 1  # the SAE is doing something
    assert result.ce_loss_clean < result.ce_loss_spliced
    assert result.ce_loss_clean < result.ce_loss_zero
    assert result.kl_div > 0
    assert result.ce_loss_recovered < 1


def test_counts_and_zeroing_gives_uniform_logits(tiny_model, result):
    assert result.l0 > 1  # the SAE is doing something
    assert result.kl_div > 0
    # Zeroing every position (BOS too, the default) of a bias-free model's resid_pre leaves it
    # nothing to go on: uniform logits, CE = ln(d_vocab).
    assert result.ce_loss_zero == pytest.approx(math.log(tiny_model.cfg.d_vocab), abs=1e-4)
    assert result.n_tokens == 2 * (N_POS - 1)  # BOS left out
    assert result.n_predictions == 2 * (N_POS - 2)  # no prediction from BOS, none past the end
    assert result.density.shape == (64,)
    assert result.dead_fraction == pytest.approx(float((result.density == 0).float().mean()))


def test_both_activation_paths_and_any_batching_agree(tiny_model, sae, tokens, result):
    # Reconstruction metrics read in the spliced pass (result) or in a pass that stops at the
    # hook, over one batch or two, are the same numbers.
    split = evals.evaluate_sae(tiny_model, sae, [tokens[:1], tokens[1:]], progress=False, compute_ce=False)
    assert split.n_tokens == result.n_tokens
    assert split.l0 == pytest.approx(result.l0)
    assert split.explained_variance == pytest.approx(result.explained_variance, abs=1e-5)
    assert split.mse == pytest.approx(result.mse, rel=1e-4)
    torch.testing.assert_close(split.density, result.density)
    assert split.n_predictions == 0 and math.isnan(split.ce_loss_clean)  # no CE without compute_ce


def test_padding_is_masked_and_streaming_and_chunking_are_exact(tiny_model, sae, tokens):
    short = 10
    padded = tokens.clone()
    padded[1, short:] = 0
    mask = torch.ones_like(tokens)
    mask[1, short:] = 0
    # One right-padded batch, cut into one-row chunks (max_logit_bytes=1)...
    one = evals.evaluate_sae(tiny_model, sae, [(padded, mask)], progress=False, max_logit_bytes=1)
    # ...against the two unpadded rows streamed as batches of different lengths.
    two = evals.evaluate_sae(tiny_model, sae, [tokens[:1], tokens[1:, :short]], progress=False)
    assert one.n_tokens == two.n_tokens == (N_POS - 1) + (short - 1)
    assert one.n_predictions == two.n_predictions == (N_POS - 2) + (short - 2)
    for key in ("l0", "explained_variance", "mse", "ce_loss_clean", "ce_loss_spliced", "ce_loss_zero", "kl_div"):
        assert getattr(one, key) == pytest.approx(getattr(two, key), rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(one.density, two.density)


def test_compare_tables_two_saes(tiny_model, tokens, result):
    perfect = identity_sae(tiny_model.cfg.d_model, HOOK)
    other = evals.evaluate_sae(tiny_model, perfect, tokens, progress=False, compute_ce=False)
    table = evals.compare({"random": result, "identity": other})
    assert list(table.index) == ["random", "identity"]
    assert {"l0", "explained_variance", "ce_loss_recovered", "dead_fraction", "dense_fraction"} <= set(table.columns)
    assert table.loc["random", "l0"] == pytest.approx(result.l0)
    assert result.to_dict()["fvu"] == pytest.approx(1 - result.explained_variance)


def test_sparsity_and_variance_agree_with_saelens(tiny_model, sae, tokens, result):
    """SAELens: ``get_sparsity_and_variance_metrics`` (l0, mse, explained_variance, feature_density)."""
    metrics, feature_metrics = get_sparsity_and_variance_metrics(
        sae, tiny_model, StubStore(tokens), ActivationScaler(),
        n_batches=1, compute_l2_norms=False, compute_sparsity_metrics=True, compute_variance_metrics=True,
        compute_featurewise_density_statistics=True, eval_batch_size_prompts=tokens.shape[0], model_kwargs={},
        ignore_tokens=[tiny_model.tokenizer.bos_token_id],
    )  # fmt: skip
    assert result.l0 == pytest.approx(metrics["l0"], rel=1e-6)
    assert result.mse == pytest.approx(metrics["mse"], rel=1e-4)
    assert result.explained_variance == pytest.approx(metrics["explained_variance"], abs=1e-5)
    torch.testing.assert_close(result.density, torch.tensor(feature_metrics["feature_density"]))


def test_max_batches_takes_exactly_that_many_and_missing_bos_warns(tiny_model, sae, tokens):
    taken = []

    def stream():
        for i in range(3):
            taken.append(i)
            yield tokens[:, 1:]  # BOS dropped: the harness says so

    with pytest.warns(MissingBOSWarning, match="do not start with BOS"):
        res = evals.evaluate_sae(tiny_model, sae, stream(), max_batches=1, compute_ce=False, progress=False)
    assert taken == [0]
    assert res.n_tokens == 2 * (N_POS - 2)


def test_several_saes_share_passes_and_each_equals_its_lone_evaluation(tiny_model, make_sae, sae, tokens, result):
    other = make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=5, input_norm=30.0)
    both = evals.evaluate_saes(tiny_model, {"a": sae, "b": other}, [tokens], progress=False, max_logit_bytes=1)
    alone = {"a": result, "b": evals.evaluate_sae(tiny_model, other, [tokens], progress=False)}
    for name, lone in alone.items():
        for key in ("l0", "explained_variance", "mse", "ce_loss_clean", "ce_loss_spliced", "ce_loss_zero",
                    "ce_loss_recovered", "kl_div", "dead_fraction"):  # fmt: skip
            assert getattr(both[name], key) == pytest.approx(getattr(lone, key), rel=1e-5, abs=1e-7), (name, key)
    fast = evals.evaluate_saes(tiny_model, {"a": sae, "b": other}, [tokens], progress=False, compute_ce=False)
    assert fast["b"].l0 == pytest.approx(alone["b"].l0)
    with pytest.raises(ValueError, match="saes is empty"):
        evals.evaluate_saes(tiny_model, {}, [tokens])
    elsewhere = make_sae(tiny_model.cfg.d_model, 32, "blocks.0.hook_resid_pre", seed=5)
    with pytest.raises(ValueError, match="shares passes at one hook"):
        evals.evaluate_saes(tiny_model, {"a": sae, "b": elsewhere}, [tokens])
