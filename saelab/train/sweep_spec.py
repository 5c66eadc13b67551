"""A sweep written down: ``"k=16,32,64"`` on the command line, or a small JSON file, turned
into one :class:`TrainConfig` per member from a base config.

    sweep_configs(base, parse_sweep(["k=16,32,64", "d_sae=2304,4608"]))   # the 6-member grid
    sweep_configs(base, read_sweep_file("sweep.json"))                      # the file's list

A sweep file is a JSON list of objects, each one member's overrides of the base config; an
object may name another ``"activation"``, which takes every field of the base it also has:

    [{"k": 32}, {"activation": "matryoshka_batchtopk", "k": 32}, {"activation": "relu", "l1_coefficient": 5}]
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from saelab.train.config import TrainConfig
from saelab.train.registry import get_architecture


def parse_sweep(specs: Sequence[str]) -> list[dict[str, Any]]:
    """``["field=v1,v2", ...]`` -> the grid of every combination, one dict of overrides each."""
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        field = field.strip().replace("-", "_")
        if not sep or not field or not values.strip():
            raise ValueError(f"A sweep axis looks like 'k=16,32,64'; got {spec!r}")
        if field in axes:
            raise ValueError(f"The sweep names {field!r} twice")
        axes[field] = [_value(v) for v in values.split(",") if v.strip()]
    if not axes:
        raise ValueError("The sweep is empty; give at least one axis such as 'k=16,32,64'")
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def read_sweep_file(path: str | Path) -> list[dict[str, Any]]:
    """A JSON list of member overrides (see the module docstring)."""
    members = json.loads(Path(path).read_text())
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise ValueError(f"{path} must hold a JSON list of objects, one per sweep member")
    if not members:
        raise ValueError(f"{path} lists no sweep member")
    return members


def sweep_configs(base: TrainConfig, members: Sequence[Mapping[str, Any]]) -> list[TrainConfig]:
    """One config per member: ``base`` with the member's overrides (and architecture)."""
    if not members:
        raise ValueError("The sweep is empty; give at least one member")
    return [_member(base, dict(m)) for m in members]


def _member(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    activation = overrides.pop("activation", base.activation)
    config_class = get_architecture(activation).config
    fields = {f.name for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"{activation} has no field {unknown[0]!r} (sweep member {overrides}); it has {sorted(fields)}"
        )
    if activation == base.activation:
        return dataclasses.replace(base, **overrides)
    # Another architecture takes every field of the base that it also has (k from TopK to BatchTopK).
    inherited = {k: v for k, v in base.to_dict().items() if k in fields}
    return config_class.from_dict({**inherited, **overrides})


def _value(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)
