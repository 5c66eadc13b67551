"""What the LLM-free explainers share: an explanation is a list of token patterns (so it is
simulatable), and a feature that never fired gets a reason instead of an invented one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

from saelab.autointerp.explanation import NEVER_FIRES, Explanation
from saelab.autointerp.feature_examples import FeatureExamples
from saelab.autointerp.patterns import Pattern, format_patterns


class Scale(NamedTuple):
    feature_max: float
    """The feature's largest activation over its explain contexts."""
    floor: float
    """Activations at or below this are not firing (the feature's threshold, at least 0)."""


class PatternExplainer(ABC):
    name: ClassVar[str]

    def explain(self, examples: FeatureExamples) -> Explanation:
        if not examples.fires:
            return Explanation(examples.feature, self.name, text="", skipped=NEVER_FIRES)
        return Explanation(examples.feature, self.name, text=format_patterns(self.patterns(examples)))

    def patterns(self, examples: FeatureExamples) -> list[Pattern]:
        """The patterns :meth:`explain` writes (none when nothing rises above the floor)."""
        feature_max = max((c.max_act for c in examples.explain), default=0.0)
        floor = max(examples.threshold, 0.0)  # weights are shares of a positive max
        return self._patterns(examples, Scale(feature_max, floor)) if feature_max > floor else []

    @abstractmethod
    def _patterns(self, examples: FeatureExamples, scale: Scale) -> list[Pattern]: ...
