"""Steering arms: one way to push generation towards a concept, and the edit that carries it.

An :class:`Arm` names a method and its parameters; rows of one generation batch may each
run a different arm, at different hooks. Every SAE arm goes through the error-preserving
splice (``x + decode(f') - decode(f)``); a DiffMean arm adds its vector; a prompting arm
edits nothing (its rows carry an instruction before the prompt); the ``none`` arm is the
unsteered baseline. Edits reach every position but BOS, in the prefill and at every
KV-cached step, as :func:`saelab.interventions.generation.sample_rows` asks.

Strength units: SAE arms (``sae`` adds, ``clamp`` sets, ``random`` adds a random feature)
are multiples of the feature's typical max activation; a ``diffmean`` strength multiplies
the DiffMean vector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.interventions.diffmean import DiffMeanVectors
from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.splice import default_mask, splice_delta

Method = Literal["none", "sae", "clamp", "diffmean", "prompting", "random"]
METHODS: tuple[str, ...] = ("none", "sae", "clamp", "diffmean", "prompting", "random")
SAE_METHODS: tuple[str, ...] = ("sae", "clamp", "random")


@dataclass(frozen=True, order=True)
class Arm:
    """One steering arm. ``concept`` is the category a DiffMean or prompting arm steers towards
    (empty for arms that do not depend on one)."""

    method: str
    concept: str = ""
    hook: str = ""
    feature: int = -1
    strength: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")

    @property
    def edits(self) -> bool:
        """Whether the arm edits activations (prompting and the baseline do not)."""
        return self.method not in ("none", "prompting")

    @property
    def label(self) -> str:
        """A short readable name, unique per arm, e.g. ``sae #949 @15 x4`` or ``diffmean python @20 x0.5``."""
        where = f" @{self.hook.split('.')[1]}" if self.hook.startswith("blocks.") else ""
        what = f" #{self.feature}" if self.feature >= 0 else ""
        concept = f" {self.concept}" if self.concept else ""
        amount = f" x{self.strength:g}" if self.edits else ""
        return f"{self.method}{concept}{what}{where}{amount}"


NO_EDIT = Arm("none")


@dataclass(frozen=True)
class ArmTools:
    """What turns arms into edits: the SAE and feature statistics at each steering hook, the
    DiffMean vectors, and the instruction of each category's prompting arm."""

    saes: Mapping[str, SAE]
    stats: Mapping[str, FeatureStats]
    diffmean: DiffMeanVectors | None = None
    instructions: Mapping[str, str] = field(default_factory=dict)

    def raw(self, arm: Arm) -> float:
        """An SAE arm's strength as an activation value."""
        self.check(arm)
        value = float(self.stats[arm.hook].typical_max[arm.feature]) * arm.strength
        if value == 0 and arm.strength != 0:
            raise ValueError(f"feature {arm.feature} at {arm.hook} never fires on the statistics' sample")
        return value

    def check(self, arm: Arm) -> None:
        if arm.edits and arm.hook not in self.saes:
            raise ValueError(f"steering hook {arm.hook!r} is not one of this comparison's hooks {list(self.saes)}")
        if arm.method in SAE_METHODS and not 0 <= arm.feature < int(self.saes[arm.hook].cfg.d_sae):
            raise ValueError(f"feature {arm.feature} is out of range at {arm.hook}")
        if arm.method == "diffmean" and self.diffmean is None:
            raise ValueError("a DiffMean arm needs DiffMean vectors")
        if arm.method == "prompting" and arm.concept not in self.instructions:
            raise ValueError(f"no instruction for {arm.concept!r}; known: {sorted(self.instructions)}")


@dataclass
class RowSteering:
    """The edits of one batch of rows (one arm per row), installed at their hooks by :meth:`run`."""

    model: HookedTransformer
    edits: dict[str, _HookEdit]
    mask: Bool[Tensor, "rows pos"] | None = None

    @classmethod
    def build(cls, model: HookedTransformer, arms: Sequence[Arm], tools: ArmTools) -> RowSteering:
        hooks = sorted({a.hook for a in arms if a.edits})
        return cls(model, {h: _HookEdit.build(h, arms, tools, model.cfg.d_model) for h in hooks})

    def run(self, tokens: Tensor, *, edit_mask: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``model(tokens, **kwargs)`` with each row's edit where ``edit_mask`` is True."""
        self.mask = edit_mask
        hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = [
            (h, self._hook_fn(edit)) for h, edit in self.edits.items()
        ]
        try:
            with self.model.hooks(fwd_hooks=hooks):
                return self.model(tokens, **kwargs)
        finally:
            self.mask = None

    def _hook_fn(self, edit: _HookEdit) -> Any:
        def hook_fn(x: Tensor, hook: Any = None) -> Tensor:  # noqa: ARG001 (TransformerLens HookPoint)
            mask = self.mask if self.mask is not None and self.mask.shape == x.shape[:2] else default_mask(x)
            keep = mask.to(x.device)[..., None]
            return x + torch.where(keep, edit.delta(x), torch.zeros((), dtype=x.dtype, device=x.device))

        return hook_fn


@dataclass(frozen=True)
class _HookEdit:
    """Per row at one hook: an added vector, and SAE features added to or set (NaN: untouched)."""

    vectors: Float[Tensor, "rows d_model"]
    sae: SAE | None
    features: Tensor
    add: Float[Tensor, "rows n"]
    clamp: Float[Tensor, "rows n"]

    @classmethod
    def build(cls, hook: str, arms: Sequence[Arm], tools: ArmTools, d_model: int) -> _HookEdit:
        here = [(r, a) for r, a in enumerate(arms) if a.edits and a.hook == hook]
        for _, arm in here:
            tools.check(arm)
        features = sorted({a.feature for _, a in here if a.method in SAE_METHODS})
        column = {f: j for j, f in enumerate(features)}
        vectors = torch.zeros(len(arms), d_model)
        add = torch.full((len(arms), len(features)), float("nan"))
        clamp = add.clone()
        for r, arm in here:
            if arm.method == "diffmean":
                assert tools.diffmean is not None
                vectors[r] = tools.diffmean.vector(arm.concept, hook) * arm.strength
            else:
                (clamp if arm.method == "clamp" else add)[r, column[arm.feature]] = tools.raw(arm)
        sae = tools.saes[hook] if features else None
        return cls(vectors, sae, torch.tensor(features, dtype=torch.long), add, clamp)

    def delta(self, x: Float[Tensor, "rows pos d"]) -> Float[Tensor, "rows pos d"]:
        delta = self.vectors.to(device=x.device, dtype=x.dtype)[:, None, :].expand_as(x)
        if self.sae is not None:
            delta = delta + splice_delta(self.sae, x, self._feature_edit)
        return delta

    def _feature_edit(self, feats: Float[Tensor, "rows pos d_sae"]) -> Tensor:
        out = feats.clone()
        index = self.features.to(feats.device)
        current = out[..., index]
        add = self.add.to(device=feats.device, dtype=feats.dtype)[:, None, :]
        clamp = self.clamp.to(device=feats.device, dtype=feats.dtype)[:, None, :]
        target = torch.where(torch.isnan(add), current, current + add)
        out[..., index] = torch.where(torch.isnan(clamp), target, clamp.expand_as(current))
        return out
