"""The examples of many features from one pass, cached on disk as JSON lines: a header line
(which pass: source, decomposition, config, tokens read, seconds), then one feature a line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from saelab._util.atomic import atomic_write_text
from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.feature_examples import FeatureExamples


@dataclass
class ExampleSet:
    key: str
    decomposition: str
    source: str
    config: ExamplesConfig
    n_tokens: int
    """Valid tokens the pass read."""
    examples: dict[int, FeatureExamples]
    seconds: float = 0.0
    """Wall time of the pass that made it (0 when it came from the cache)."""

    def __getitem__(self, feature: int) -> FeatureExamples:
        try:
            return self.examples[feature]
        except KeyError:
            raise KeyError(f"Feature {feature} was not in this pass; it holds {len(self.examples)} features.") from None

    def __iter__(self) -> Iterator[FeatureExamples]:
        return iter(self.examples.values())

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def features(self) -> list[int]:
        return list(self.examples)

    def save(self, path: Path) -> None:
        header = {"key": self.key, "decomposition": self.decomposition, "source": self.source,
                  "config": self.config.to_dict(), "n_tokens": self.n_tokens, "seconds": self.seconds}  # fmt: skip
        lines = [json.dumps(header)] + [json.dumps(ex.to_dict()) for ex in self.examples.values()]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: Path) -> ExampleSet:
        with open(path, encoding="utf-8") as handle:
            header = json.loads(handle.readline())
            examples = [FeatureExamples.from_dict(json.loads(line)) for line in handle if line.strip()]
        return cls(header["key"], header["decomposition"], header["source"],
                   ExamplesConfig.from_dict(header["config"]), header["n_tokens"],
                   {ex.feature: ex for ex in examples}, seconds=0.0)  # fmt: skip
