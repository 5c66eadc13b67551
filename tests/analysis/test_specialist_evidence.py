"""What a specialist fires on, on hand-made per-token features whose answers are known: its
top texts on either side of its category, the share of its activation outside it, its token
evidence, and which category each significant specialist belongs to."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from saelab.analysis.specialist_evidence import (
    share_outside,
    specialist_categories,
    specialist_evidence,
    top_texts_in_and_out,
)
from saelab.extract.per_token import PerTokenFeatures

LABELS = ["maths", "maths", "maths", "prose", "prose", "prose"]


def _per_token(dense: list[list[list[float]]], tokens: list[list[str]]) -> PerTokenFeatures:
    rows = torch.cat([torch.tensor(d) for d in dense])
    r, c = rows.nonzero(as_tuple=True)
    sizes = torch.tensor([len(d) for d in dense])
    return PerTokenFeatures(
        tokens=tokens,
        token_ids=[list(range(len(t))) for t in tokens],
        d_sae=rows.shape[1],
        row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(r, minlength=len(rows)), 0)]),
        feature_idx=c,
        values=rows[r, c],
        text_row_start=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)]),
    )


@pytest.fixture
def per_token() -> PerTokenFeatures:
    # Feature 0 fires on "+" in the maths texts (peaks 3, 1, 2) and once on prose text 4 (peak 0.5);
    # feature 1 fires on "the" in prose texts 3 and 5 only. Each text has two tokens.
    dense = [
        [[3.0, 0.0], [0.0, 0.0]],
        [[1.0, 0.0], [0.0, 0.0]],
        [[2.0, 0.0], [1.0, 0.0]],
        [[0.0, 2.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.5, 0.0]],
        [[0.0, 4.0], [0.0, 0.0]],
    ]
    tokens = [["+", "x"], ["+", "y"], ["+", "+"], ["the", "cat"], ["a", "+"], ["the", "dog"]]
    return _per_token(dense, tokens)


def test_top_texts_rank_by_peak_on_each_side_of_the_category(per_token):
    shown = top_texts_in_and_out(per_token, 0, LABELS, "maths", n=2)
    assert shown.inside == [0, 2] and shown.outside == [4, 3]  # texts 3 and 5 tie at 0: text order
    assert shown.both == [0, 2, 4, 3]
    assert top_texts_in_and_out(per_token, 1, LABELS, "prose", n=3) == ([5, 3, 4], [0, 1, 2])


def test_top_texts_refuse_an_unknown_category_or_mismatched_labels(per_token):
    with pytest.raises(ValueError, match="no text"):
        top_texts_in_and_out(per_token, 0, LABELS, "urls")
    with pytest.raises(ValueError, match="5 labels for 6 texts"):
        top_texts_in_and_out(per_token, 0, LABELS[:5], "maths")


def test_share_outside_is_the_activation_on_other_categories_over_the_total(per_token):
    totals = per_token.pool("sum")
    assert share_outside(totals, LABELS, "maths", 0) == pytest.approx(0.5 / 7.5)
    assert share_outside(totals, LABELS, "prose", 1) == 0.0
    assert share_outside(totals, LABELS, "maths", 1) == 1.0


def test_a_feature_that_never_fires_has_nothing_outside():
    silent = _per_token([[[0.0, 1.0]], [[0.0, 0.0]]], [["a"], ["b"]])
    assert share_outside(silent.pool("sum"), ["x", "y"], "x", 0) == 0.0


def test_evidence_lists_top_tokens_their_share_and_the_share_outside(per_token):
    best = pd.DataFrame({"category": ["maths", "prose"], "feature": [0, 1], "auroc": [0.9, 0.8]})
    evidence = specialist_evidence(per_token, best, LABELS, top=1)
    assert list(evidence.columns) == ["category", "feature", "auroc", "top_tokens", "top_token_share", "share_outside"]
    maths, prose = evidence.to_dict("records")
    assert maths["top_tokens"] == "'+'" and maths["top_token_share"] == pytest.approx(1.0)  # every firing is on "+"
    assert maths["share_outside"] == pytest.approx(0.5 / 7.5)
    assert prose["top_tokens"] == "'the'" and prose["share_outside"] == 0.0
    with pytest.raises(ValueError, match="auroc"):
        specialist_evidence(per_token, best.drop(columns="auroc"), LABELS)


def test_each_specialist_feature_gets_the_category_of_its_highest_auroc():
    table = pd.DataFrame({
        "category": ["maths", "prose", "prose", "urls"],
        "feature": [7, 7, 9, 11],
        "auroc": [0.85, 0.95, 0.9, 0.99],
        "is_specialist": [True, True, True, False],
    })  # fmt: skip
    categories = specialist_categories(table)
    assert categories.to_dict() == {7: "prose", 9: "prose"}  # 11 is not significant: absent
    assert categories.index.name == "feature"
