"""The JSON round-trip every config dataclass shares."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from saelab._util.config import JsonConfig


@dataclass(frozen=True)
class Example(JsonConfig):
    name: str = "x"
    sizes: tuple[int, ...] = (1, 2)
    weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes))
        problems = []
        if not self.name:
            problems.append("name must not be empty")
        if any(s < 1 for s in self.sizes):
            problems.append(f"sizes must be positive, got {self.sizes}")
        self.raise_problems(problems)


def test_round_trip_through_json_keeps_tuples():
    cfg = Example(name="y", sizes=(3, 4), weights={"a": 0.5})
    assert cfg.to_dict() == {"name": "y", "sizes": [3, 4], "weights": {"a": 0.5}}
    assert Example.from_json(cfg.to_json()) == cfg


def test_unknown_fields_are_named():
    message = r"Unknown Example field\(s\) \['size'\]\. Valid fields: \['name', 'sizes', 'weights'\]"
    with pytest.raises(ValueError, match=message):
        Example.from_dict({"size": 3})


def test_every_problem_is_listed_at_once():
    with pytest.raises(ValueError, match=r"Invalid Example: name must not be empty; sizes must be positive"):
        Example(name="", sizes=(0,))
