"""Input checks and small helpers every analysis shares.

Pooled activations arrive as torch tensors or numpy arrays, ``[n_texts, d_sae]``; they are
read through :func:`as_numpy` without importing torch, so the statistics depend on numpy,
scipy and pandas only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

if TYPE_CHECKING:
    from torch import Tensor

    # Pooled activations, one row per text: a torch tensor or a numpy array.
    Pooled = Float[Tensor, "n_texts d_sae"] | Float[np.ndarray, "n_texts d_sae"]


def as_numpy(pooled: Any, name: str = "pooled") -> Float[np.ndarray, "n_texts d_sae"]:
    """Pooled activations as a float numpy array (float32 unless given float64), checked."""
    if hasattr(pooled, "detach"):  # a torch tensor, read without importing torch
        tensor = pooled.detach().cpu()
        is_64 = str(tensor.dtype) == "torch.float64"
        pooled = (tensor if is_64 else tensor.float()).numpy()
    array = np.asarray(pooled)
    if array.dtype != np.float64:
        array = array.astype(np.float32, copy=False)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_texts, d_sae], got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); it needs at least one text and one feature")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; pooled activations must be finite")
    return array


def check_top(top: int, name: str = "top") -> int:
    """``top`` as an int, or a ValueError unless it is an integer >= 1."""
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {top!r}")
    return int(top)


def check_unit(value: float, name: str, *, low_open: bool = False) -> float:
    """``value`` as a float, or a ValueError unless it lies in [0, 1] ((0, 1] if ``low_open``)."""
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def check_feature_ids(features: Iterable[int], d_sae: int) -> list[int]:
    """Feature ids as ints: non-empty, in range, no duplicates."""
    ids = [int(f) for f in features]
    if not ids:
        raise ValueError("features is empty; pass at least one feature id")
    bad = [f for f in ids if not 0 <= f < d_sae]
    if bad:
        raise ValueError(f"feature ids {bad[:10]} are out of range; valid ids are 0..{d_sae - 1} ({d_sae} features)")
    if len(set(ids)) != len(ids):
        raise ValueError("features contains duplicates; pass each feature id once")
    return ids


class Labels(NamedTuple):
    codes: Int[np.ndarray, " n_texts"]
    """Index into ``names`` for every text."""
    names: list[str]
    """Distinct categories in order of first appearance."""


def encode_labels(labels: Sequence[str], n_texts: int) -> Labels:
    """One category per text, as integer codes in order of first appearance."""
    if isinstance(labels, str):
        raise ValueError("labels must be a sequence with one category per text, not a single string")
    labels = list(labels)
    if len(labels) != n_texts:
        raise ValueError(f"labels has {len(labels)} entries but pooled has {n_texts} texts; they must match")
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=False)
    if (codes < 0).any():
        raise ValueError("labels contains missing values (None/NaN); every text needs a category")
    return Labels(codes=codes.astype(np.int64), names=[str(u) for u in uniques])


def select_categories(names: list[str], categories: Sequence[str] | None) -> list[int]:
    """Codes of ``categories`` (all when None), with a clear error for unknown names."""
    if categories is None:
        return list(range(len(names)))
    if isinstance(categories, str):
        categories = [categories]
    unknown = [c for c in categories if c not in names]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; valid: {names}")
    return [names.index(c) for c in categories]


def one_hot(codes: Int[np.ndarray, " n_texts"], n_categories: int) -> Float[np.ndarray, "n_texts n_categories"]:
    return (codes[:, None] == np.arange(n_categories)[None, :]).astype(np.float64)


def ranked(frame: pd.DataFrame, sort_by: list[str], top: int) -> pd.DataFrame:
    """Sort best first (descending on ``sort_by``, then feature id) and add a 1-based ``rank``."""
    frame = frame.sort_values([*sort_by, "feature"], ascending=[False] * len(sort_by) + [True], kind="stable")
    frame = frame.head(top).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame
