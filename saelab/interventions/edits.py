"""Feature edits as functions of the features at a hook, and the checks every caller shares.

An edit never modifies its input: it returns a new tensor, so the splice can decode the
original and the edited features side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import torch
from jaxtyping import Float
from torch import Tensor

from saelab.interventions.splice import FeatureEdit


def check_features(features: Iterable[int], d_sae: int) -> list[int]:
    """Feature ids as ints, or a clear error for one that the SAE does not have."""
    out = []
    for feature in features:
        if isinstance(feature, bool) or not isinstance(feature, (int, Tensor)) and not hasattr(feature, "__index__"):
            raise TypeError(f"feature ids must be integers, got {feature!r}")
        index = int(feature)
        if not 0 <= index < d_sae:
            raise ValueError(f"feature {index} is out of range: this SAE has features 0..{d_sae - 1}")
        out.append(index)
    if not out:
        raise ValueError("no features given; pass at least one feature id")
    return out


def check_strengths(values: Iterable[float], what: str = "strength") -> list[float]:
    out = [float(v) for v in values]
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what} must be a finite number, got {bad[0]}")
    return out


def add_to_features(features: Sequence[int], amounts: Sequence[float]) -> FeatureEdit:
    """``f[..., i] += amount``: adds ``amount * W_dec[i]`` to the activation."""
    index, delta = _indexed(features, amounts)

    def edit(feats: Float[Tensor, "batch pos d_sae"]) -> Tensor:
        out = feats.clone()
        out[..., index] += delta.to(device=feats.device, dtype=feats.dtype)
        return out

    return edit


def set_features(features: Sequence[int], values: Sequence[float] | Tensor) -> FeatureEdit:
    """``f[..., i] = value``: a clamp (or, with 0 or the feature's mean, an ablation)."""
    index, target = _indexed(features, values)

    def edit(feats: Float[Tensor, "batch pos d_sae"]) -> Tensor:
        out = feats.clone()
        out[..., index] = target.to(device=feats.device, dtype=feats.dtype)
        return out

    return edit


def _indexed(features: Sequence[int], values: Sequence[float] | Tensor) -> tuple[Tensor, Tensor]:
    index = torch.as_tensor(list(features), dtype=torch.long)
    vals = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if vals.numel() != index.numel():
        raise ValueError(f"{index.numel()} features but {vals.numel()} values")
    if index.unique().numel() != index.numel():
        raise ValueError(f"a feature appears twice in {index.tolist()}; give each feature one value")
    return index, vals


def as_mapping(edits: Mapping[int, float] | Iterable[tuple[int, float]]) -> dict[int, float]:
    """``{feature: strength}`` from a mapping or ``(feature, strength)`` pairs."""
    if isinstance(edits, Mapping):
        return {int(f): float(v) for f, v in cast("Mapping[int, float]", edits).items()}
    pairs = cast("Iterable[tuple[int, float]]", edits)
    return {int(f): float(v) for f, v in pairs}
