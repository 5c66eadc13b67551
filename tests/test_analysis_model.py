"""saelab.analysis parts that need the real model: streamed top examples and feature_summary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import saelab
from saelab import analysis

HOOK = "blocks.4.hook_resid_pre"
TEXTS = [
    "def add(a, b):\n    return a + b",
    "The cat sat on the mat and looked out of the window.",
    "https://example.com/search?q=sparse+autoencoders",
    "∫_0^1 x^2 dx = 1/3",
    "¿Dónde está la biblioteca? 🤔",
    "I think I'll finish this tomorrow, honestly.",
    "Hereinafter the party of the first part shall be referred to as the Licensor.",
]
FEATURES = [0, 5, 17, 63]


@pytest.fixture(scope="module")
def sae(model, make_sae):
    return make_sae(model.cfg.d_model, 64, HOOK, seed=3)


def brute_force_top(per_token, feature: int, k: int) -> list[tuple[float, int, int]]:
    """(value, text, position) of the k largest active tokens, earliest first on ties."""
    entries = [
        (float(v), t, p)
        for t in range(per_token.n_texts)
        for p, v in enumerate(per_token.dense(t)[:, feature].tolist())
        if v > 0
    ]
    return sorted(entries, key=lambda e: (-e[0], e[1], e[2]))[:k]


def test_streamed_top_examples_equal_brute_force(model, sae):
    # batch_size=1 on both sides: every text runs alone, so values are bit-identical.
    everything = saelab.extract_features(model, sae, TEXTS, pooling=None, batch_size=1)
    k, window = 4, (3, 2)
    streamed = analysis.top_examples(
        model, sae, (t for t in TEXTS), FEATURES, k=k, window=window, batch_size=1, chunk_size=2, progress=False
    )
    assert list(streamed.frame.columns) == [
        "feature", "rank", "value", "text_index", "position", "token",
        "context_tokens", "context_values", "left", "right",
    ]  # fmt: skip
    n_checked = 0
    for f in FEATURES:
        rows = streamed.for_feature(f)
        expected = brute_force_top(everything, f, k)
        assert [(r.value, r.text_index, r.position) for r in rows.itertuples()] == expected
        assert rows["rank"].tolist() == list(range(1, len(expected) + 1))
        for r in rows.itertuples():
            tokens, values = everything.tokens[r.text_index], everything.dense(r.text_index)[:, f]
            lo, hi = r.position - r.left, r.position + r.right + 1
            assert r.left == min(window[0], r.position) and r.right == min(window[1], len(tokens) - 1 - r.position)
            assert r.context_tokens == tokens[lo:hi] and r.token == tokens[r.position]
            assert r.context_values == values[lo:hi].tolist()
            assert r.context_values[r.left] == r.value
            n_checked += 1
    assert n_checked >= 8  # the random SAE really fires on these texts
    # Chunking does not change the answer.
    whole = analysis.top_examples(model, sae, TEXTS, FEATURES, k=k, window=window, batch_size=1, progress=False)
    assert whole.frame.drop(columns=["context_tokens", "context_values"]).equals(
        streamed.frame.drop(columns=["context_tokens", "context_values"])
    )


def test_top_examples_rejects_bad_input(model, sae):
    with pytest.raises(ValueError, match="out of range"):
        analysis.top_examples(model, sae, TEXTS, [64], progress=False)
    with pytest.raises(ValueError, match="texts is empty"):
        analysis.top_examples(model, sae, iter([]), [1], progress=False)
    with pytest.raises(ValueError, match="window"):
        analysis.top_examples(model, sae, TEXTS, [1], window=(-1, 2), progress=False)
    result = analysis.top_examples(model, sae, TEXTS[:1], [1], k=1, progress=False)
    with pytest.raises(ValueError, match="not requested"):
        result.for_feature(2)


def test_logit_lens_promotes_a_planted_token(model, make_sae):
    planted = make_sae(model.cfg.d_model, 64, HOOK, seed=4)
    the = model.tokenizer.encode(" the", add_special_tokens=False)[0]
    with torch.no_grad():
        planted.W_dec[7] = model.W_E[the]
        planted.W_dec[8] = -model.W_E[the]
    lens = analysis.feature_summary(planted, 7, model=model, top_tokens=5).logit_lens
    assert list(lens.columns) == ["direction", "rank", "token", "token_id", "logit"]
    promoted = lens[lens.direction == "promoted"]
    assert promoted.token_id.iloc[0] == the and promoted.token.iloc[0] == " the"
    assert promoted.logit.is_monotonic_decreasing and len(promoted) == 5
    expected = (model.W_E[the] @ model.W_U).detach()
    assert promoted.logit.iloc[0] == pytest.approx(float(expected.max()), rel=1e-5)
    suppressed = analysis.logit_lens(model, planted, 8, top=5).query("direction == 'suppressed'")
    assert suppressed.token_id.iloc[0] == the and suppressed.logit.is_monotonic_increasing


def test_feature_summary_parts(model, sae):
    per_token = saelab.extract_features(model, sae, TEXTS, pooling=None)
    pooled = saelab.extract_features(model, sae, TEXTS)
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
    assert analysis.neuronpedia_link(sae, f) is None
    only_pooled = analysis.feature_summary(sae, f, pooled=pooled)
    assert only_pooled.density is None and only_pooled.histogram.counts.sum() == int((pooled[:, f] != 0).sum())
    with pytest.raises(ValueError, match="out of range"):
        analysis.feature_summary(sae, 64)
    with pytest.raises(ValueError, match="without pooled"):
        analysis.feature_summary(sae, f, labels=labels)
