"""What a category specialist fires on, beyond its AUROC.

A "maths specialist" may fire on maths as a topic or on the symbols maths happens to use,
and it may spend much of its activation on other texts. From the per-token features:
its top token strings and their share of its activation (:func:`specialist_evidence`), the
share that lands on texts outside its category (:func:`share_outside`), its strongest texts
on either side for highlighting them together (:func:`top_texts_in_and_out`), and which
category each significant specialist belongs to (:func:`specialist_categories`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float

from saelab.analysis._checks import check_top
from saelab.analysis.max_activating import token_profile
from saelab.extract.per_token import PerTokenFeatures


class CategoryTexts(NamedTuple):
    """Text indices, strongest first: in the category, and outside it."""

    inside: list[int]
    outside: list[int]

    @property
    def both(self) -> list[int]:
        """The inside texts, then the outside ones: the order a side-by-side view shows them."""
        return [*self.inside, *self.outside]


def top_texts_in_and_out(
    per_token: PerTokenFeatures, feature: int, labels: Sequence[str], category: str, n: int = 3
) -> CategoryTexts:
    """The ``n`` texts of ``category`` where ``feature`` peaks highest, and the ``n`` such texts
    of every other category (ranked by each text's largest activation; ties keep text order,
    so texts where it never fires come last, in dataset order)."""
    n = check_top(n, "n")
    _check_labels(per_token, labels)
    if category not in labels:
        raise ValueError(f"category {category!r} has no text; the labels hold {sorted(set(labels))}")
    order = per_token.text_max(int(feature)).argsort(descending=True, stable=True).tolist()
    inside = [i for i in order if labels[i] == category][:n]
    outside = [i for i in order if labels[i] != category][:n]
    return CategoryTexts(inside, outside)


def share_outside(
    totals: Float[torch.Tensor, "n_texts d_sae"], labels: Sequence[str], category: str, feature: int
) -> float:
    """The share of ``feature``'s summed activation (``totals``: ``per_token.pool("sum")``)
    that lands on texts outside ``category``; 0 for a feature that never fires."""
    if len(labels) != totals.shape[0]:
        raise ValueError(f"{len(labels)} labels for {totals.shape[0]} texts")
    outside = torch.tensor([label != category for label in labels])
    column = totals[:, int(feature)]
    return float(column[outside].sum() / column.sum().clamp(min=1e-12))


def specialist_evidence(
    per_token: PerTokenFeatures, best: pd.DataFrame, labels: Sequence[str], *, top: int = 5
) -> pd.DataFrame:
    """For each row of ``best`` (columns ``category, feature, auroc``, e.g. each category's
    rank-1 row of :func:`~saelab.analysis.specialists`): ``top_tokens`` (its ``top`` token
    strings by summed activation, :func:`~saelab.analysis.token_profile`), ``top_token_share``
    (their share of its activation on all tokens) and ``share_outside`` (the share on texts
    outside its category)."""
    top = check_top(top)
    _check_labels(per_token, labels)
    missing = {"category", "feature", "auroc"} - set(best.columns)
    if missing:
        raise ValueError(f"best lacks the columns {sorted(missing)}")
    totals = per_token.pool("sum")
    rows = []
    triples = zip(best["category"].tolist(), best["feature"].tolist(), best["auroc"].tolist(), strict=True)
    for category, feature, auroc in triples:
        tokens = token_profile(per_token, int(feature), top=top)
        rows.append({
            "category": category,
            "feature": int(feature),
            "auroc": float(auroc),
            "top_tokens": ", ".join(repr(t) for t in tokens["token"]),
            "top_token_share": float(tokens["share"].to_numpy().sum()),
            "share_outside": share_outside(totals, labels, category, int(feature)),
        })  # fmt: skip
    columns = ["category", "feature", "auroc", "top_tokens", "top_token_share", "share_outside"]
    return pd.DataFrame(rows, columns=pd.Index(columns))


def specialist_categories(table: pd.DataFrame) -> pd.Series:
    """Feature id -> the category it is a significant specialist of (``is_specialist`` rows of
    a :func:`~saelab.analysis.specialists` table); a feature significant for several
    categories gets the one where its AUROC is highest. Features that are no specialist are
    absent."""
    missing = {"category", "feature", "auroc", "is_specialist"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    significant = table.loc[table["is_specialist"].astype(bool).to_numpy()]
    # Stable sort: between equal AUROCs the table's own order decides, as it did when ranked.
    chosen = significant.sort_values(by="auroc", ascending=False, kind="mergesort").drop_duplicates("feature")
    return pd.Series(chosen["category"].to_numpy(), index=chosen["feature"].astype(np.int64).to_numpy(),
                     name="category").rename_axis("feature")


def _check_labels(per_token: PerTokenFeatures, labels: Sequence[str]) -> None:
    if len(labels) != per_token.n_texts:
        raise ValueError(f"{len(labels)} labels for {per_token.n_texts} texts")
