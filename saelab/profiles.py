"""The two profiles the notebooks run under, in one place.

* ``offline`` (default): the embedded SmolLM2-135M and saelab's own bundled SAE suite.
  Needs no network, ever.
* ``gemma``: the embedded Gemma-3-270M (base) and saelab's bundled suite for it, at the same
  relative depths as ``offline``'s. Needs no network either.
* ``gpt2``: GPT-2 small with SAELens's ``gpt2-small-res-jb`` (the setup the notebook series began with).
  Downloads weights on first use.

Notebooks switch between them with one parameter: ``PROFILE = "offline"`` or ``"gpt2"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer

from saelab.models import EMBEDDED_MODEL, load_model
from saelab.saes import BUNDLED_RELEASE, load_sae, neuronpedia_id, neuronpedia_url, release_model_kwargs

DEFAULT = "offline"


@dataclass(frozen=True)
class Profile:
    """A model, the SAE release that reads it, and the hooks we compare across depth."""

    name: str
    """Profile name used in notebooks' parameters cell."""
    model_name: str
    """Name given to :func:`saelab.load_model`."""
    sae_release: str
    """Release (or bundled suite name) given to :func:`saelab.load_sae`."""
    hooks: tuple[str, ...]
    """The SAE ids compared in the multi-layer notebook, shallow to deep."""
    default_hook: str
    """The hook used when a notebook looks at one SAE."""
    needs_network: bool
    """Whether first use downloads weights."""
    description: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra model loading options the SAE release asks for (from SAELens's yaml)."""

    def __post_init__(self) -> None:
        if self.default_hook not in self.hooks:
            raise ValueError(f"default_hook {self.default_hook!r} is not one of hooks {self.hooks}")

    def load_model(
        self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> HookedTransformer:
        return load_model(self.model_name, device, dtype=dtype, from_pretrained_kwargs=self.model_kwargs)

    def load_sae(self, hook: str | None = None, device: str | torch.device | None = None) -> SAE:
        hook = hook or self.default_hook
        if hook not in self.hooks:
            raise ValueError(f"Hook {hook!r} is not in profile {self.name!r}; valid: {list(self.hooks)}")
        return load_sae(self.sae_release, hook, device)

    def neuronpedia_id(self, hook: str) -> str | None:
        return neuronpedia_id(self.sae_release, hook)

    def neuronpedia_url(self, hook: str, feature: int | None = None) -> str | None:
        return neuronpedia_url(self.neuronpedia_id(hook), feature)


def _offline() -> Profile:
    hooks = tuple(f"blocks.{layer}.hook_resid_pre" for layer in (15, 20, 25, 28))
    return Profile(
        name="offline",
        model_name=EMBEDDED_MODEL,
        sae_release=BUNDLED_RELEASE,
        hooks=hooks,
        default_hook="blocks.20.hook_resid_pre",
        needs_network=False,
        description="SmolLM2-135M (30 layers, d_model 576) with saelab's bundled residual-stream SAEs.",
    )


def _gemma() -> Profile:
    # 9/12/15/17 of 18 layers sit at the relative depths of SmolLM2's 15/20/25/28 of 30.
    hooks = tuple(f"blocks.{layer}.hook_resid_pre" for layer in (9, 12, 15, 17))
    return Profile(
        name="gemma",
        model_name="gemma-3-270m",
        sae_release="saelab-gemma3-270m",
        hooks=hooks,
        default_hook="blocks.12.hook_resid_pre",
        needs_network=False,
        description="Gemma-3-270M base (18 layers, d_model 640) with saelab's bundled residual-stream SAEs.",
    )


def _gpt2() -> Profile:
    release = "gpt2-small-res-jb"
    return Profile(
        name="gpt2",
        model_name="gpt2",
        sae_release=release,
        hooks=tuple(f"blocks.{layer}.hook_resid_pre" for layer in (6, 8, 10, 11)),
        default_hook="blocks.6.hook_resid_pre",
        needs_network=True,
        description="GPT-2 small (12 layers, d_model 768) with Joseph Bloom's residual-stream SAEs (24,576 features).",
        model_kwargs=release_model_kwargs(release),
    )


_BUILDERS = {"offline": _offline, "gemma": _gemma, "gpt2": _gpt2}


def names() -> list[str]:
    return list(_BUILDERS)


def get(name: str = DEFAULT) -> Profile:
    """The named profile; ``"offline"`` is the default."""
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise ValueError(f"Unknown profile {name!r}. Valid profiles: {names()}") from None
