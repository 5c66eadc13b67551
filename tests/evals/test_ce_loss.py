"""saelab.evals.ce_loss: CE-loss metrics of the spliced, clean and zero-ablated runs on the tiny
model. A perfect SAE recovers everything, BOS is never spliced, measured or counted, and the
numbers agree with SAELens's ``get_downstream_reconstruction_metrics`` (``ce_loss_without_sae``
/ ``_with_sae`` / ``_with_ablation``, ``ce_loss_score``, ``kl_div_with_sae``) on a stub store."""

from __future__ import annotations

import math

import pytest
from sae_lens.evals import get_downstream_reconstruction_metrics
from sae_lens.training.activation_scaler import ActivationScaler

from saelab import evals
from saelab.evals.ce_loss import ce_loss_metrics
from saelab.forward import resume
from tests.evals._helpers import HOOK, StubStore, identity_sae


@pytest.fixture(scope="module")
def ce_with_bos(tiny_model, sae, tokens):
    """Through the plain path (three full forward passes), not the resume-from-the-hook one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resume, "resume_layer_for_hook", lambda hook: None)
        return ce_loss_metrics(tiny_model, sae, tokens, exclude_bos=False)


def test_perfect_sae_recovers_everything(tiny_model, tokens):
    # Nothing excluded: every position, BOS included, goes through the SAE. A resid_post hook
    # also checks where the patched runs resume (block L+1: resuming at L would run block L
    # twice and the spliced loss would move off the clean one).
    hook = "blocks.1.hook_resid_post"
    perfect = identity_sae(tiny_model.cfg.d_model, hook)
    ce = ce_loss_metrics(tiny_model, perfect, tokens, exclude_bos=False)
    assert ce.ce_loss_spliced == pytest.approx(ce.ce_loss_clean, abs=1e-4)
    assert ce.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert ce.kl_div == pytest.approx(0.0, abs=1e-5)
    assert ce.ce_loss_zero == pytest.approx(math.log(tiny_model.cfg.d_vocab), abs=1e-4)
    recon = evals.evaluate_sae(tiny_model, perfect, tokens, progress=False, compute_ce=False, exclude_bos=False)
    assert recon.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert recon.mse < 1e-6 * float(tiny_model.cfg.d_model)


def test_bos_is_never_spliced_measured_or_counted(tiny_model, tokens, result, ce_with_bos):
    """An SAE perfect everywhere but at BOS scores perfectly when BOS is excluded.

    Also covers ``ablate_bos=False``: a zero-ablation that leaves BOS alone, like the splice.
    """
    bad_at_bos = identity_sae(tiny_model.cfg.d_model, HOOK)
    exact_decode = bad_at_bos.decode

    def decode(feats):
        out = exact_decode(feats).clone()
        out[:, 0] = 1000.0  # position 0 is BOS in every row
        return out

    bad_at_bos.decode = decode
    excluded = ce_loss_metrics(tiny_model, bad_at_bos, tokens, ablate_bos=False)
    assert excluded.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert excluded.kl_div == pytest.approx(0.0, abs=1e-5)
    assert excluded.ce_loss_clean == pytest.approx(result.ce_loss_clean)  # same counted predictions
    # With BOS intact the model is not left with nothing: the baseline is no longer ln(d_vocab).
    assert abs(excluded.ce_loss_zero - math.log(tiny_model.cfg.d_vocab)) > 0.05
    assert evals.evaluate_sae(tiny_model, bad_at_bos, tokens, progress=False, compute_ce=False).mse < 1e-3
    # The SAE really is wrong at BOS, and the harness sees it when BOS is not excluded.
    with_bos = evals.evaluate_sae(tiny_model, bad_at_bos, tokens, progress=False, compute_ce=False, exclude_bos=False)
    assert with_bos.mse > 1e5
    # BOS's own prediction (of token 1) is counted only when BOS is not excluded.
    assert ce_with_bos.n_predictions == result.n_predictions + tokens.shape[0]


def _saelens_downstream(model, sae, tokens, ignore_tokens):
    return get_downstream_reconstruction_metrics(
        sae, model, StubStore(tokens), ActivationScaler(), compute_kl=True, compute_ce_loss=True,
        n_batches=1, eval_batch_size_prompts=tokens.shape[0], ignore_tokens=ignore_tokens,
    )  # fmt: skip


def test_ce_metrics_agree_with_saelens_when_bos_is_excluded(tiny_model, sae, tokens, result):
    """SAELens: ``get_downstream_reconstruction_metrics`` with ``ignore_tokens=[bos]``.

    Everything agrees: like SAELens, the default ``ablate_bos=True`` zeroes BOS in the
    zero-ablated run while the splice leaves it alone.
    """
    theirs = _saelens_downstream(tiny_model, sae, tokens, [tiny_model.tokenizer.bos_token_id])
    assert result.ce_loss_clean == pytest.approx(theirs["ce_loss_without_sae"], rel=1e-5)
    assert result.ce_loss_spliced == pytest.approx(theirs["ce_loss_with_sae"], rel=1e-5)
    assert result.kl_div == pytest.approx(theirs["kl_div_with_sae"], rel=1e-4, abs=1e-6)
    assert result.ce_loss_zero == pytest.approx(theirs["ce_loss_with_ablation"], rel=1e-5)
    assert result.ce_loss_recovered == pytest.approx(theirs["ce_loss_score"], rel=1e-4)


def test_all_ce_metrics_agree_with_saelens_when_nothing_is_excluded(tiny_model, sae, tokens, ce_with_bos):
    """SAELens: ``get_downstream_reconstruction_metrics`` with ``ignore_tokens=None``.

    Ours comes from the plain three-full-passes path here, and from the resuming path in the
    test above, so both agree with SAELens.
    """
    ours = ce_with_bos
    theirs = _saelens_downstream(tiny_model, sae, tokens, None)
    assert ours.ce_loss_clean == pytest.approx(theirs["ce_loss_without_sae"], rel=1e-5)
    assert ours.ce_loss_spliced == pytest.approx(theirs["ce_loss_with_sae"], rel=1e-5)
    assert ours.ce_loss_zero == pytest.approx(theirs["ce_loss_with_ablation"], rel=1e-5)
    assert ours.ce_loss_recovered == pytest.approx(theirs["ce_loss_score"], rel=1e-4)
    assert ours.kl_div == pytest.approx(theirs["kl_div_with_sae"], rel=1e-4, abs=1e-6)


def test_bad_inputs_explain(tiny_model, sae, tokens):
    with pytest.raises(ValueError, match=r"\[batch, pos\]"):
        ce_loss_metrics(tiny_model, sae, tokens[0])
    with pytest.raises(TypeError, match="integer token ids"):
        ce_loss_metrics(tiny_model, sae, tokens.float())
    with pytest.raises(TypeError, match="attention_mask"):
        evals.evaluate_sae(tiny_model, sae, [[tokens]], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evals.evaluate_sae(tiny_model, sae, [], progress=False)
