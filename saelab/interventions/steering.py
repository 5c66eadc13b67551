"""Steering: add a feature's decoder direction, or clamp the feature, at every position.

Strengths are in units of the feature's typical maximum activation on real text
(:class:`FeatureStats.typical_max`), so "2.0" means twice as strong as the feature usually
gets, whatever its scale; ``unit="raw"`` takes activation values as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab.interventions.edits import add_to_features, as_mapping, check_features, check_strengths, set_features
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.splice import FeatureEdit, Splice, spliced

SteerMode = Literal["add", "clamp"]
StrengthUnit = Literal["max", "raw"]
STEER_MODES: tuple[str, ...] = ("add", "clamp")
UNITS: tuple[str, ...] = ("max", "raw")


def raw_strengths(
    edits: Mapping[int, float],
    sae: SAE,
    *,
    unit: StrengthUnit = "max",
    stats: FeatureStats | None = None,
) -> dict[int, float]:
    """Strengths as activation values: checked ids, finite values, multiplied by
    ``typical_max`` when ``unit="max"``."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {list(UNITS)}, got {unit!r}")
    features = check_features(edits, sae.cfg.d_sae)
    values = check_strengths(edits.values())
    if unit == "raw":
        return dict(zip(features, values, strict=True))
    if stats is None:
        raise ValueError("unit='max' needs the SAE's FeatureStats (saelab.interventions.feature_stats)")
    if stats.d_sae != sae.cfg.d_sae:
        raise ValueError(f"FeatureStats are for d_sae={stats.d_sae}, this SAE has {sae.cfg.d_sae}")
    dead = [f for f in features if float(stats.typical_max[f]) <= 0]
    if dead:
        raise ValueError(
            f"features {dead} never fire on the statistics' sample, so 'typical max' is 0; "
            "give their strength as an activation value with unit='raw'"
        )
    return {f: v * float(stats.typical_max[f]) for f, v in zip(features, values, strict=True)}


def steering_edit(raw: Mapping[int, float], mode: SteerMode) -> FeatureEdit:
    """The feature edit for raw strengths: ``add`` adds them, ``clamp`` sets the features to them."""
    if mode not in STEER_MODES:
        raise ValueError(f"mode must be one of {list(STEER_MODES)}, got {mode!r}")
    features, values = list(raw), list(raw.values())
    return add_to_features(features, values) if mode == "add" else set_features(features, values)


@contextmanager
def steer(
    model: HookedTransformer,
    sae: SAE,
    edits: Mapping[int, float] | Iterable[tuple[int, float]],
    *,
    mode: SteerMode = "add",
    unit: StrengthUnit = "max",
    stats: FeatureStats | None = None,
) -> Iterator[Splice]:
    """Steer ``model`` inside the ``with`` block: ``{feature: strength}`` at ``sae``'s hook.

    ``add`` adds ``strength * W_dec[feature]`` at every position (BOS aside); ``clamp`` sets
    the feature to ``strength`` through the error-preserving splice. With ``unit="max"`` (the
    default) statistics are measured, or read from the cache, when not given.
    """
    mapping = as_mapping(edits)
    if unit == "max" and stats is None:
        check_features(mapping, sae.cfg.d_sae)  # fail before measuring anything
        stats = feature_stats(model, sae)
    raw = raw_strengths(mapping, sae, unit=unit, stats=stats)
    with spliced(model, sae, steering_edit(raw, mode)) as installed:
        yield installed
