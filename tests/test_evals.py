"""saelab.evals: hand-computed metrics, agreement with SAELens's own eval code, and the real model.

Agreement tests call these SAELens functions (sae_lens/evals.py) on the same inputs:
* ``ExplainedVarianceCalculator`` (add_batch / compute): the post-fix explained variance;
* ``get_sparsity_and_variance_metrics``: ``l0``, ``mse``, ``explained_variance`` and the
  per-feature ``feature_density``, run on our model with a stub activation store;
* ``get_downstream_reconstruction_metrics``: ``ce_loss_without_sae`` / ``_with_sae`` /
  ``_with_ablation``, ``ce_loss_score`` and ``kl_div_with_sae``, same stub store.
The stub store only answers ``get_batch_tokens``, which is all these functions ask of it, so
they run offline. SAELens excludes BOS by token id (``ignore_tokens``); our tokens hold the
BOS id only at position 0, so that is the same as our positional ``exclude_bos``.
"""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.evals import (
    ExplainedVarianceCalculator,
    get_downstream_reconstruction_metrics,
    get_sparsity_and_variance_metrics,
)
from sae_lens.saes.sae import SAEMetadata
from sae_lens.training.activation_scaler import ActivationScaler

from saelab import evals
from saelab.evals import ReconstructionStats

HOOK = "blocks.2.hook_resid_pre"
N_POS = 16
TEXTS = [
    "The committee met every Tuesday, but as the project grew the meetings moved to a larger "
    "room, then to a hall, and finally to an online call with hundreds of participants.",
    "import numpy as np\n\ndef softmax(x, axis=-1):\n    z = x - x.max(axis=axis, keepdims=True)\n"
    "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)\n",
]


# ---------------------------------------------------------------------------------------
# Pure metrics, hand-computed.


def test_explained_variance_hand_computed():
    # mean (2, 1); total variance = 1 + 1 = 2; residual = 1 -> EV 0.5 (from zero it would be 1 - 1/12).
    x = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    assert evals.explained_variance(x, x.clone()) == 1.0
    assert evals.explained_variance(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-12)
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 1.0]])
    assert evals.explained_variance(x, x_hat) == pytest.approx(0.5)
    assert evals.fvu(x, x_hat) == pytest.approx(0.5)
    # Pooled, not a mean of per-token ratios: 1 - 1/8 over three tokens.
    x3 = torch.tensor([[0.0], [2.0], [4.0]])
    assert evals.explained_variance(x3, torch.tensor([[1.0], [2.0], [4.0]])) == pytest.approx(0.875)
    # Leading dims are tokens too.
    assert evals.explained_variance(x[None], x_hat[None]) == pytest.approx(0.5)


def test_explained_variance_constant_input_follows_saelens_convention():
    x = torch.ones(4, 3)
    assert evals.explained_variance(x, x.clone()) == 1.0
    assert evals.explained_variance(x, torch.zeros_like(x)) == 0.0


def test_mse_and_l0_hand_computed():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert evals.mse(x, torch.zeros_like(x)) == pytest.approx(2.0)  # (0 + 4) / 2 tokens
    feats = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [3.0, -1.0, 0.0]])
    torch.testing.assert_close(evals.l0(feats), torch.tensor([2.0, 0.0, 2.0]))
    assert evals.l0(feats[None]).shape == (1, 3)


def test_dead_dense_and_density():
    counts = torch.tensor([0, 5, 1, 10])
    density = evals.feature_density(counts, 10)
    torch.testing.assert_close(density, torch.tensor([0.0, 0.5, 0.1, 1.0]))
    assert evals.dead_fraction(counts, 10) == 0.25
    assert evals.dense_fraction(density) == 0.5  # 0.1 itself is not above the threshold
    assert evals.dense_fraction(density, threshold=0.05) == 0.75
    with pytest.raises(ValueError, match="n_tokens must be positive"):
        evals.dead_fraction(counts, 0)
    with pytest.raises(ValueError, match=r"\[0, n_tokens=4\]"):
        evals.feature_density(counts, 4)


def test_density_histogram_counts():
    # Off the decade edges: float32 densities such as 0.01 sit a hair below 10^-2.
    density = torch.tensor([0.0, 0.002, 0.02, 0.2, 1.0, 0.5])
    hist = evals.density_histogram(density, torch.tensor([-3.0, -2.0, -1.0, 0.0]))
    assert hist.counts.tolist() == [1, 1, 3]  # [-3,-2): 0.002; [-2,-1): 0.02; [-1, 0]: 0.2, 0.5, 1
    assert (hist.n_dead, hist.n_outside) == (1, 0)
    narrow = evals.density_histogram(density, torch.tensor([-2.0, -1.0]))
    assert narrow.counts.tolist() == [1] and narrow.n_outside == 4
    auto = evals.density_histogram(density, bins=6)
    assert auto.log10_edges[0] == -3 and auto.log10_edges[-1] == 0 and len(auto.counts) == 6
    assert int(auto.counts.sum()) + auto.n_dead == len(density)
    with pytest.raises(ValueError, match="increasing"):
        evals.density_histogram(density, torch.tensor([0.0, -1.0]))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        evals.mse(torch.zeros(2, 3), torch.zeros(3, 2))


def test_streaming_stats_equal_one_shot_whatever_the_batching():
    gen = torch.Generator().manual_seed(0)
    # A large common offset, like the residual stream's, to exercise the variance update.
    x = torch.randn(50, 8, generator=gen) + 300.0
    x_hat = x + 0.5 * torch.randn(50, 8, generator=gen)
    feats = torch.relu(torch.randn(50, 16, generator=gen))
    stats = ReconstructionStats(d_sae=16)
    for part in (slice(0, 7), slice(7, 8), slice(8, 50)):
        stats.add(x[part], feats[part], x_hat[part])
    assert stats.explained_variance == pytest.approx(evals.explained_variance(x, x_hat), rel=1e-9)
    assert stats.mse == pytest.approx(evals.mse(x, x_hat), rel=1e-6)
    assert stats.l0 == pytest.approx(float(evals.l0(feats).mean()))
    torch.testing.assert_close(stats.fired, (feats != 0).sum(0))


def test_typical_explained_variance_leaves_out_massive_activations():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, 8, generator=gen)
    x[17] *= 50.0  # one token with a massive norm, as SmolLM2 gives some first tokens
    x_hat = x + 0.3 * torch.randn(200, 8, generator=gen)
    x_hat[17] = x[17] * 0.9  # reconstructed well in relative terms, but its residual is huge
    feats = torch.relu(torch.randn(200, 16, generator=gen))
    stats = ReconstructionStats(d_sae=16)
    for part in (slice(0, 100), slice(100, 200)):
        stats.add(x[part], feats[part], x_hat[part])
    ordinary = torch.ones(200, dtype=torch.bool)
    ordinary[17] = False
    assert stats.n_massive == 1
    assert stats.typical.n_tokens == 199
    assert stats.explained_variance_typical == pytest.approx(evals.explained_variance(x[ordinary], x_hat[ordinary]), rel=1e-9)
    # The pooled number is dominated by the one token; the typical one is not.
    assert stats.explained_variance == pytest.approx(evals.explained_variance(x, x_hat), rel=1e-9)
    assert abs(stats.explained_variance - stats.typical.explained_variance) > 0.05


def test_explained_variance_agrees_with_saelens_calculator():
    """SAELens: ``sae_lens.evals.ExplainedVarianceCalculator`` fed the same batches."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, 12, generator=gen) * 3 + torch.randn(12, generator=gen) * 20
    x_hat = x + 1.3 * torch.randn(3, 40, 12, generator=gen)
    theirs = ExplainedVarianceCalculator()
    for xb, x_hat_b in zip(x, x_hat):
        theirs.add_batch(sae_output=x_hat_b, hidden_acts=xb)
    ours = evals.explained_variance(x, x_hat)
    assert 0.5 < ours < 0.95
    # SAELens squares and sums each batch in float32 before moving to float64; we stay in float64.
    assert ours == pytest.approx(theirs.compute(), rel=1e-5)


# ---------------------------------------------------------------------------------------
# The real model.


class _StubStore:
    """The one method SAELens's eval helpers use from an ActivationsStore."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def get_batch_tokens(self, n: int) -> torch.Tensor:
        assert n == self.tokens.shape[0]
        return self.tokens


@pytest.fixture(scope="module")
def tokens(model):
    toks = model.to_tokens(TEXTS)[:, :N_POS]
    assert (toks[:, 0] == model.tokenizer.bos_token_id).all()
    assert (toks[:, 1:] != model.tokenizer.bos_token_id).all()
    return toks


@pytest.fixture(scope="module")
def sae(model, make_sae):
    return make_sae(model.cfg.d_model, 64, HOOK, seed=2, input_norm=30.0)


def identity_sae(d_in: int, hook: str) -> StandardSAE:
    """A real SAELens SAE that reconstructs exactly: relu(x) - relu(-x) = x."""
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, metadata=SAEMetadata(hook_name=hook)))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


@pytest.fixture(scope="module")
def result(model, sae, tokens):
    return evals.evaluate_sae(model, sae, [tokens], progress=False)


def test_random_sae_loses_loss_and_zeroing_gives_uniform_logits(model, result):
    assert result.l0 > 1  # the SAE is doing something
    assert result.ce_loss_clean < result.ce_loss_spliced
    assert result.ce_loss_clean < result.ce_loss_zero
    assert result.kl_div > 0
    assert result.ce_loss_recovered < 1
    # Zeroing every position (BOS too, the default) of a bias-free model's resid_pre leaves it
    # nothing to go on: uniform logits, CE = ln(d_vocab).
    assert result.ce_loss_zero == pytest.approx(math.log(model.cfg.d_vocab), abs=1e-4)
    assert result.n_tokens == 2 * (N_POS - 1)  # BOS left out
    assert result.n_predictions == 2 * (N_POS - 2)  # no prediction from BOS, none past the end
    assert result.density.shape == (64,)
    assert result.dead_fraction == pytest.approx(float((result.density == 0).float().mean()))


@pytest.fixture(scope="module")
def ce_with_bos(model, sae, tokens):
    """Through the plain path (three full forward passes), not the resume-from-the-hook one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evals, "_resume_layer", lambda hook: None)
        return evals.ce_loss_metrics(model, sae, tokens, exclude_bos=False)


def test_perfect_sae_recovers_everything(model, tokens):
    # Nothing excluded: every position, BOS included, goes through the SAE. A resid_post hook
    # also checks where the patched runs resume (block L+1: resuming at L would run block L
    # twice and the spliced loss would move off the clean one).
    hook = "blocks.1.hook_resid_post"
    perfect = identity_sae(model.cfg.d_model, hook)
    ce = evals.ce_loss_metrics(model, perfect, tokens, exclude_bos=False)
    assert ce.ce_loss_spliced == pytest.approx(ce.ce_loss_clean, abs=1e-4)
    assert ce.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert ce.kl_div == pytest.approx(0.0, abs=1e-5)
    assert ce.ce_loss_zero == pytest.approx(math.log(model.cfg.d_vocab), abs=1e-4)
    recon = evals.evaluate_sae(model, perfect, tokens, progress=False, compute_ce=False, exclude_bos=False)
    assert recon.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert recon.mse < 1e-6 * float(model.cfg.d_model)


def test_bos_is_never_spliced_measured_or_counted(model, tokens, result, ce_with_bos):
    """An SAE perfect everywhere but at BOS scores perfectly when BOS is excluded.

    Also covers ``ablate_bos=False``: a zero-ablation that leaves BOS alone, like the splice.
    """
    bad_at_bos = identity_sae(model.cfg.d_model, HOOK)
    exact_decode = bad_at_bos.decode

    def decode(feats):
        out = exact_decode(feats).clone()
        out[:, 0] = 1000.0  # position 0 is BOS in every row
        return out

    bad_at_bos.decode = decode
    excluded = evals.ce_loss_metrics(model, bad_at_bos, tokens, ablate_bos=False)
    assert excluded.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert excluded.kl_div == pytest.approx(0.0, abs=1e-5)
    assert excluded.ce_loss_clean == pytest.approx(result.ce_loss_clean)  # same counted predictions
    # With BOS intact the model is not left with nothing: the baseline is no longer ln(d_vocab).
    assert abs(excluded.ce_loss_zero - math.log(model.cfg.d_vocab)) > 0.05
    assert evals.evaluate_sae(model, bad_at_bos, tokens, progress=False, compute_ce=False).mse < 1e-3
    # The SAE really is wrong at BOS, and the harness sees it when BOS is not excluded.
    with_bos = evals.evaluate_sae(model, bad_at_bos, tokens, progress=False, compute_ce=False, exclude_bos=False)
    assert with_bos.mse > 1e5
    # BOS's own prediction (of token 1) is counted only when BOS is not excluded.
    assert ce_with_bos.n_predictions == result.n_predictions + tokens.shape[0]


def test_both_activation_paths_and_any_batching_agree(model, sae, tokens, result):
    # Reconstruction metrics read in the spliced pass (result) or in a pass that stops at the
    # hook, over one batch or two, are the same numbers.
    split = evals.evaluate_sae(model, sae, [tokens[:1], tokens[1:]], progress=False, compute_ce=False)
    assert split.n_tokens == result.n_tokens
    assert split.l0 == pytest.approx(result.l0)
    assert split.explained_variance == pytest.approx(result.explained_variance, abs=1e-5)
    assert split.mse == pytest.approx(result.mse, rel=1e-4)
    torch.testing.assert_close(split.density, result.density)
    assert split.n_predictions == 0 and math.isnan(split.ce_loss_clean)  # no CE without compute_ce


def test_padding_is_masked_and_streaming_and_chunking_are_exact(model, sae, tokens):
    short = 10
    padded = tokens.clone()
    padded[1, short:] = 0
    mask = torch.ones_like(tokens)
    mask[1, short:] = 0
    # One right-padded batch, cut into one-row chunks (max_logit_bytes=1)...
    one = evals.evaluate_sae(model, sae, [(padded, mask)], progress=False, max_logit_bytes=1)
    # ...against the two unpadded rows streamed as batches of different lengths.
    two = evals.evaluate_sae(model, sae, [tokens[:1], tokens[1:, :short]], progress=False)
    assert one.n_tokens == two.n_tokens == (N_POS - 1) + (short - 1)
    assert one.n_predictions == two.n_predictions == (N_POS - 2) + (short - 2)
    for key in ("l0", "explained_variance", "mse", "ce_loss_clean", "ce_loss_spliced", "ce_loss_zero", "kl_div"):
        assert getattr(one, key) == pytest.approx(getattr(two, key), rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(one.density, two.density)


def test_compare_tables_two_saes(model, tokens, result):
    other = evals.evaluate_sae(model, identity_sae(model.cfg.d_model, HOOK), tokens, progress=False, compute_ce=False)
    table = evals.compare({"random": result, "identity": other})
    assert list(table.index) == ["random", "identity"]
    assert {"l0", "explained_variance", "ce_loss_recovered", "dead_fraction", "dense_fraction"} <= set(table.columns)
    assert table.loc["random", "l0"] == pytest.approx(result.l0)
    assert result.to_dict()["fvu"] == pytest.approx(1 - result.explained_variance)


def test_sparsity_and_variance_agree_with_saelens(model, sae, tokens, result):
    """SAELens: ``get_sparsity_and_variance_metrics`` (l0, mse, explained_variance, feature_density)."""
    metrics, feature_metrics = get_sparsity_and_variance_metrics(
        sae, model, _StubStore(tokens), ActivationScaler(),
        n_batches=1, compute_l2_norms=False, compute_sparsity_metrics=True, compute_variance_metrics=True,
        compute_featurewise_density_statistics=True, eval_batch_size_prompts=tokens.shape[0], model_kwargs={},
        ignore_tokens=[model.tokenizer.bos_token_id],
    )  # fmt: skip
    assert result.l0 == pytest.approx(metrics["l0"], rel=1e-6)
    assert result.mse == pytest.approx(metrics["mse"], rel=1e-4)
    assert result.explained_variance == pytest.approx(metrics["explained_variance"], abs=1e-5)
    torch.testing.assert_close(result.density, torch.tensor(feature_metrics["feature_density"]))


def _saelens_downstream(model, sae, tokens, ignore_tokens):
    return get_downstream_reconstruction_metrics(
        sae, model, _StubStore(tokens), ActivationScaler(), compute_kl=True, compute_ce_loss=True,
        n_batches=1, eval_batch_size_prompts=tokens.shape[0], ignore_tokens=ignore_tokens,
    )  # fmt: skip


def test_ce_metrics_agree_with_saelens_when_bos_is_excluded(model, sae, tokens, result):
    """SAELens: ``get_downstream_reconstruction_metrics`` with ``ignore_tokens=[bos]``.

    Everything agrees: like SAELens, the default ``ablate_bos=True`` zeroes BOS in the
    zero-ablated run while the splice leaves it alone.
    """
    theirs = _saelens_downstream(model, sae, tokens, [model.tokenizer.bos_token_id])
    assert result.ce_loss_clean == pytest.approx(theirs["ce_loss_without_sae"], rel=1e-5)
    assert result.ce_loss_spliced == pytest.approx(theirs["ce_loss_with_sae"], rel=1e-5)
    assert result.kl_div == pytest.approx(theirs["kl_div_with_sae"], rel=1e-4, abs=1e-6)
    assert result.ce_loss_zero == pytest.approx(theirs["ce_loss_with_ablation"], rel=1e-5)
    assert result.ce_loss_recovered == pytest.approx(theirs["ce_loss_score"], rel=1e-4)


def test_all_ce_metrics_agree_with_saelens_when_nothing_is_excluded(model, sae, tokens, ce_with_bos):
    """SAELens: ``get_downstream_reconstruction_metrics`` with ``ignore_tokens=None``.

    Ours comes from the plain three-full-passes path here, and from the resuming path in the
    test above, so both agree with SAELens.
    """
    ours = ce_with_bos
    theirs = _saelens_downstream(model, sae, tokens, None)
    assert ours.ce_loss_clean == pytest.approx(theirs["ce_loss_without_sae"], rel=1e-5)
    assert ours.ce_loss_spliced == pytest.approx(theirs["ce_loss_with_sae"], rel=1e-5)
    assert ours.ce_loss_zero == pytest.approx(theirs["ce_loss_with_ablation"], rel=1e-5)
    assert ours.ce_loss_recovered == pytest.approx(theirs["ce_loss_score"], rel=1e-4)
    assert ours.kl_div == pytest.approx(theirs["kl_div_with_sae"], rel=1e-4, abs=1e-6)


def test_max_batches_takes_exactly_that_many_and_missing_bos_warns(model, sae, tokens):
    taken = []

    def stream():
        for i in range(3):
            taken.append(i)
            yield tokens[:, 1:]  # BOS dropped: the harness says so

    with pytest.warns(evals.MissingBOSWarning, match="do not start with BOS"):
        res = evals.evaluate_sae(model, sae, stream(), max_batches=1, compute_ce=False, progress=False)
    assert taken == [0]
    assert res.n_tokens == 2 * (N_POS - 2)


def test_bad_inputs_explain(model, sae, tokens):
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        evals.ce_loss_metrics(model, sae, tokens[0])
    with pytest.raises(TypeError, match="integer token ids"):
        evals.ce_loss_metrics(model, sae, tokens.float())
    with pytest.raises(TypeError, match="attention_mask"):
        evals.evaluate_sae(model, sae, [[tokens]], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evals.evaluate_sae(model, sae, [], progress=False)


def test_shared_density_histograms_use_one_set_of_edges():
    from saelab.evals import EvalResult, density_histogram, shared_density_histograms

    def result(density):
        hist = density_histogram(density)
        return EvalResult(
            hook="h", d_sae=len(density), exclude_bos=True, ablate_bos=True, n_tokens=1000, n_predictions=0,
            l0=1.0, explained_variance=0.5, mse=1.0, ce_loss_clean=float("nan"), ce_loss_spliced=float("nan"),
            ce_loss_zero=float("nan"), ce_loss_recovered=float("nan"), kl_div=float("nan"), dead_fraction=0.0,
            dense_fraction=0.0, dense_threshold=0.1, density=density, histogram=hist,
        )

    a = result(torch.tensor([1e-3, 1e-2, 0.0]))
    b = result(torch.tensor([2e-5, 0.5, 0.5]))
    assert not torch.equal(a.histogram.log10_edges, b.histogram.log10_edges)  # why sharing is needed
    shared = shared_density_histograms({"a": a, "b": b}, bins=10)
    assert torch.equal(shared["a"].log10_edges, shared["b"].log10_edges)
    assert float(shared["a"].log10_edges[0]) == -5.0  # floor(log10(2e-5))
    assert int(shared["a"].counts.sum()) + shared["a"].n_dead == 3
    assert int(shared["b"].counts.sum()) == 3
