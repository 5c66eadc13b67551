"""One JSON round-trip for every config dataclass (training, corpus, activation store).

A config is a frozen dataclass that lists every problem in one ``ValueError`` and
survives ``from_json(to_json())``. JSON has no tuples, so ``to_dict`` writes them as lists
and each config's ``__post_init__`` turns them back into tuples.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, Self


def plain(value: Any) -> Any:
    """``value`` with tuples turned into lists and dicts copied, recursively (JSON-ready)."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class JsonConfig:
    """Mixin for frozen config dataclasses: ``to_dict``/``from_dict``/``to_json``/``from_json``
    and ``raise_problems`` for validation in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        valid = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} field(s) {unknown}. Valid fields: {sorted(valid)}")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def raise_problems(self, problems: list[str]) -> None:
        """Raise one ValueError naming every problem (nothing when the list is empty)."""
        if problems:
            raise ValueError(f"Invalid {type(self).__name__}: " + "; ".join(problems))
