"""A linear probe for text categories on one SAE's pooled features: the concept score of steering.

Steering feature i at hook A and then asking "does the output look like category c?" with
feature i itself would be circular. The probe reads a *different* SAE (another layer),
trained on the labelled dataset and applied to the generated text by the unsteered model.
It trains on windows of ``window`` tokens (the length of a generated continuation, not of a
whole document), split into train and test by *text* so windows of one text never sit on
both sides, and reports its test accuracy beside chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.cache import cached_per_token
from saelab.extract.extract import extract_features
from saelab.extract.per_token import PerTokenFeatures
from saelab.saes import sae_hook_name

DEFAULT_WINDOW = 24


@dataclass
class ConceptProbe:
    """Multinomial logistic regression on standardised mean-pooled SAE features."""

    sae: SAE
    hook: str
    categories: list[str]
    weight: Float[Tensor, "d_sae n_categories"]
    bias: Float[Tensor, " n_categories"]
    center: Float[Tensor, " d_sae"]
    scale: Float[Tensor, " d_sae"]
    test_accuracy: float
    """Accuracy on windows of held-out texts."""
    chance: float
    """Accuracy of always answering the most common category on those windows."""
    window: int

    @classmethod
    def train(
        cls,
        model: HookedTransformer,
        sae: SAE,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        window: int = DEFAULT_WINDOW,
        test_fraction: float = 0.25,
        l2: float = 1e-2,
        seed: int = 0,
    ) -> ConceptProbe:
        """Fit on the windows of most texts of each category; test on the rest."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        categories = list(dict.fromkeys(labels))
        if len(categories) < 2:
            raise ValueError(f"a probe needs at least two categories, got {categories}")
        hook = sae_hook_name(sae)
        per_token = cached_per_token(model, {hook: sae}, texts)[hook]
        x, text_of = window_features(per_token, window)
        y = torch.tensor([categories.index(labels[int(i)]) for i in text_of])
        test_text = _held_out_texts(labels, categories, test_fraction, seed)
        is_test = torch.isin(text_of, test_text)
        center, scale = x[~is_test].mean(0), x[~is_test].std(0) + 1e-3
        weight, bias = _fit((x[~is_test] - center) / scale, y[~is_test], len(categories), l2)
        pred = ((x[is_test] - center) / scale @ weight + bias).argmax(-1)
        majority = torch.bincount(y[is_test], minlength=len(categories)).max().item()
        return cls(sae, hook, categories, weight, bias, center, scale,
                   test_accuracy=float((pred == y[is_test]).float().mean()),
                   chance=majority / max(1, int(is_test.sum())), window=window)  # fmt: skip

    def predict_proba(self, model: HookedTransformer, texts: Sequence[str]) -> Float[Tensor, "n n_categories"]:
        """Category probabilities of each text (mean-pooled features, BOS excluded)."""
        pooled = extract_features(model, self.sae, list(texts), progress=False).float().cpu()
        return torch.softmax((pooled - self.center) / self.scale @ self.weight + self.bias, dim=-1)

    def score(self, model: HookedTransformer, texts: Sequence[str], category: str) -> Float[Tensor, " n"]:
        """The probability of ``category`` for each text: the concept score."""
        if category not in self.categories:
            raise ValueError(f"the probe knows {self.categories}, not {category!r}")
        return self.predict_proba(model, texts)[:, self.categories.index(category)]


def window_features(per_token: PerTokenFeatures, window: int) -> tuple[Float[Tensor, "n_windows d_sae"], Tensor]:
    """Mean features over consecutive ``window``-token spans of each text (a last span shorter
    than half a window is dropped unless it is the text's only one), and each span's text."""
    if window < 1:
        raise ValueError(f"window must be at least 1 token, got {window}")
    rows, owner = [], []
    for i in range(per_token.n_texts):
        dense = per_token.dense(i)
        for lo in range(0, dense.shape[0], window):
            span = dense[lo : lo + window]
            if span.shape[0] * 2 >= window or lo == 0:
                rows.append(span.mean(0))
                owner.append(i)
    return torch.stack(rows), torch.tensor(owner)


def _held_out_texts(labels: Sequence[str], categories: list[str], fraction: float, seed: int) -> Tensor:
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for c in categories:
        members = [i for i, label in enumerate(labels) if label == c]
        n = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        held += rng.choice(members, size=n, replace=False).tolist()
    return torch.tensor(held, dtype=torch.long)


def _fit(x: Tensor, y: Tensor, n_classes: int, l2: float) -> tuple[Tensor, Tensor]:
    weight = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach(), bias.detach()
