"""saelab.analysis.feature: one feature's summary (density, histogram, category means,
Neuronpedia link) on the tiny model, and its logit lens on the real one (a planted embedding
row promotes its own token only where embedding and unembedding were trained together), each
with a small random SAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saelab
from saelab import analysis
from saelab.analysis.feature import logit_lens, neuronpedia_link
from tests.analysis._helpers import HOOK, TEXTS


def test_logit_lens_promotes_a_planted_token(model, make_sae):
    planted = make_sae(model.cfg.d_model, 64, HOOK, seed=4)
    the = model.tokenizer.encode(" the", add_special_tokens=False)[0]
    with torch.no_grad():
        planted.W_dec[7] = model.W_E[the]
        planted.W_dec[8] = -model.W_E[the]
    lens = analysis.feature_summary(planted, 7, model=model, top=5).logit_lens
    assert list(lens.columns) == ["direction", "rank", "token", "token_id", "logit"]
    promoted = lens[lens.direction == "promoted"]
    assert promoted.token_id.iloc[0] == the and promoted.token.iloc[0] == " the"
    assert promoted.logit.is_monotonic_decreasing and len(promoted) == 5
    expected = (model.W_E[the] @ model.W_U).detach()
    assert promoted.logit.iloc[0] == pytest.approx(float(expected.max()), rel=1e-5)
    suppressed = logit_lens(model, planted, 8, top=5).query("direction == 'suppressed'")
    assert suppressed.token_id.iloc[0] == the and suppressed.logit.is_monotonic_increasing


def test_feature_summary_parts(tiny_model, sae):
    per_token = saelab.extract_per_token(tiny_model, sae, TEXTS)
    pooled = saelab.extract_features(tiny_model, sae, TEXTS)
    labels = ["code", "prose", "code", "math", "prose", "prose", "formal"]
    f = int((pooled > 0).sum(0).argmax())
    summary = analysis.feature_summary(sae, f, pooled=pooled, per_token=per_token, labels=labels, bins=10)
    dense = torch.cat([per_token.dense(i)[:, f] for i in range(len(TEXTS))])
    assert summary.feature == f and summary.hook == HOOK and summary.d_sae == 64
    assert summary.density == pytest.approx(float((dense > 0).float().mean()))
    counts, edges = summary.histogram
    assert counts.sum() == int((dense > 0).sum()) and len(edges) == 11
    means = summary.category_means
    assert means.category.tolist() == ["code", "prose", "math", "formal"]
    col = pooled[:, f].numpy()
    assert means.set_index("category").loc["prose", "mean"] == pytest.approx(col[[1, 4, 5]].mean(), rel=1e-6)
    assert means.set_index("category").loc["code", "frac_active"] == np.mean(col[[0, 2]] > 0)
    assert summary.logit_lens is None and summary.neuronpedia_url is None  # no model; no Neuronpedia id
    assert neuronpedia_link(sae, f) is None
    assert summary.explanation is None and summary.explanation_score is None
    only_pooled = analysis.feature_summary(sae, f, pooled=pooled, explanation="code <tokens>", explanation_score="0.4")
    assert only_pooled.explanation == "code <tokens>" and only_pooled.explanation_score == "0.4"  # passed through
    assert only_pooled.density is None and only_pooled.histogram.counts.sum() == int((pooled[:, f] != 0).sum())
    with pytest.raises(ValueError, match="out of range"):
        analysis.feature_summary(sae, 64)
    with pytest.raises(ValueError, match="without pooled"):
        analysis.feature_summary(sae, f, labels=labels)
