"""The configuration every SAE architecture shares: sizes, optimiser, schedule, dtypes, provenance.

:class:`TrainConfig` is the common base; each architecture's file subclasses it with the
options only that architecture uses (``relu.ReLUConfig``, ``topk.TopKConfig``, ...) and names
itself in the class variable ``activation``. ``to_dict`` writes ``activation`` beside the
fields, and ``TrainConfig.from_dict`` / ``from_json`` read it back to pick the subclass, so a
stored configuration knows its architecture. Build one by name with
:func:`saelab.train.registry.config_for`. Change a field with :func:`dataclasses.replace`,
which validates again. This module imports torch only to check a ``device`` string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

from saelab._util.config import JsonConfig

Kernel = Literal["fast", "reference"]
ComputeDtype = Literal["float32", "bfloat16"]
ParamDtype = Literal["float32", "float64"]
Normalization = Literal["expected_average_only_in", "none"]

KERNELS: tuple[str, ...] = ("fast", "reference")
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
PARAM_DTYPES: tuple[str, ...] = ("float32", "float64")
NORMALIZATIONS: tuple[str, ...] = ("expected_average_only_in", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(JsonConfig):
    """What defines an SAE and how it is trained (not where the data comes from), common to
    every architecture. Construct a subclass (or use ``config_for``), never this class."""

    activation: ClassVar[str] = ""
    """The architecture's registry name (``relu``, ``jumprelu``, ``topk``, ``batchtopk``, ``matryoshka_batchtopk``),
    set by each subclass; ``to_dict`` writes it and ``from_dict`` dispatches on it."""

    d_in: int = 576
    """Width of the activations the SAE reads (d_model for residual-stream hooks)."""
    d_sae: int = 4608
    """Number of latents (dictionary size)."""
    normalize_activations: Normalization = "expected_average_only_in"
    """``expected_average_only_in`` (SAELens's name): multiply the inputs by one constant so
    their mean norm is sqrt(d_in), estimated on the first ``norm_batches`` batches. Residual
    norms grow several-fold with depth; on unit-scale inputs one lr and one sparsity
    coefficient mean the same at every layer, and Adam moves the biases and thresholds fast
    enough to make ReLU/JumpReLU sparse within a short run. The constant is kept in the SAE
    and folded into the exported weights, which therefore read raw activations. ``none``
    trains on the activations as they are."""
    norm_batches: int = 8
    """Batches averaged to estimate the normalisation constant."""
    dead_tokens_threshold: int = 500_000
    """A latent is dead once it has not fired for this many training tokens. Counted in
    tokens, not steps, so the meaning does not change with the batch size."""

    kernel: Kernel = "fast"
    """``fast``: each architecture's sparse kernel where it has one (TopK and BatchTopK decode
    and back-propagate through the selected latents only; ReLU through the positive ones
    while they are few). ``reference``: the plain dense computation. Same maths; the tests
    check one against the other. JumpReLU always runs its dense kernel."""
    compute_dtype: ComputeDtype = "float32"
    """Dtype of the large training matmuls. ``bfloat16`` is faster on CPUs with bf16 units
    and on GPUs; master weights, optimiser state and the sparse kernels stay in ``dtype``."""
    dtype: ParamDtype = "float32"
    """Dtype of the parameters (master weights)."""
    device: str | None = None
    """Where to train; None picks CUDA when available, else CPU."""

    lr: float = 4e-4
    """Adam learning rate (peak, after warm-up)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""
    adam_eps: float = 1e-8
    """Adam's epsilon."""
    grad_clip_norm: float | None = None
    """Clip the global gradient norm to this before each Adam step (SAELens's trainer always
    clips at 1.0, which helps early TopK training); None disables clipping."""
    lr_warmup_steps: int = 50
    """Linear warm-up from ~0 to ``lr`` over the first N steps."""
    lr_decay_steps: int = 200
    """Linear decay from ``lr`` to 0 over the final N steps of ``total_steps``. If it overlaps
    the warm-up, the schedule follows the lower of the two lines."""
    total_steps: int = 1000
    """Number of optimiser steps in the run."""
    batch_size: int = 4096
    """Tokens (activation vectors) per step."""
    seed: int = 0
    """Seeds the initialisation (and, in the trainer, everything else random)."""

    model_name: str = "smollm2-135m"
    """Model whose activations are read (recorded in the exported SAE)."""
    hook_name: str = "blocks.20.hook_resid_pre"
    """TransformerLens hook the SAE reads (recorded in the exported SAE)."""
    context_size: int | None = None
    """Tokens per training sequence, if known (recorded in the exported SAE)."""
    prepend_bos: bool = True
    """Whether training sequences started with BOS (recorded in the exported SAE)."""
    dataset: str = ""
    """Short description of the training corpus (recorded as ``dataset_path``)."""

    def __post_init__(self) -> None:
        if not type(self).activation:
            raise TypeError(
                "TrainConfig is the base every architecture shares; construct an architecture's config "
                "(ReLUConfig, JumpReLUConfig, TopKConfig, BatchTopKConfig, MatryoshkaBatchTopKConfig) or use "
                "config_for(name, ...)"
            )
        # JSON turns tuples into lists; accept that so from_json(to_json()) round-trips.
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        self.raise_problems(self._problems())

    def to_dict(self) -> dict[str, Any]:
        return {"activation": self.activation, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The config ``data`` describes. On ``TrainConfig`` itself the ``activation`` key picks
        the architecture; on a subclass it may be absent, or must name that subclass."""
        data = dict(data)
        name = data.pop("activation", None)
        if cls.activation:
            if name is not None and name != cls.activation:
                raise ValueError(f"{cls.__name__} is activation={cls.activation!r}, but the data says {name!r}")
            return super().from_dict(data)
        from saelab.train.registry import get_architecture

        if name is None:
            raise ValueError("A TrainConfig dict needs an 'activation' key to say which architecture it describes")
        return get_architecture(name).config.from_dict(data)  # type: ignore[return-value]

    def _problems(self) -> list[str]:
        """Every reason the configuration is invalid (empty when it is fine). Subclasses
        extend the list with their own fields' checks."""
        out = [
            f"{name}={value!r}; valid options: {list(choices)}"
            for name, value, choices in (
                ("kernel", self.kernel, KERNELS),
                ("compute_dtype", self.compute_dtype, COMPUTE_DTYPES),
                ("dtype", self.dtype, PARAM_DTYPES),
                ("normalize_activations", self.normalize_activations, NORMALIZATIONS),
            )
            if value not in choices
        ]
        out += positive_int_problems(
            self, ("d_in", "d_sae", "total_steps", "batch_size", "dead_tokens_threshold", "norm_batches")
        )
        if out:
            return out  # the checks below assume the basics hold
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            out.append(f"grad_clip_norm must be positive or None, got {self.grad_clip_norm}")
        if self.lr <= 0:
            out.append(f"lr must be > 0, got {self.lr}")
        if self.adam_eps <= 0:
            out.append(f"adam_eps must be > 0, got {self.adam_eps}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            out.append(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        out += self._schedule_problems()
        if self.context_size is not None and self.context_size < 1:
            out.append(f"context_size must be a positive integer or None, got {self.context_size}")
        if self.device is not None:
            try:
                import torch

                torch.device(self.device)
            except (RuntimeError, ValueError) as err:
                out.append(
                    f"device={self.device!r} is not a torch device ({err}); use e.g. 'cpu', 'cuda', 'cuda:0' or None"
                )
        return out

    def _schedule_problems(self) -> list[str]:
        if self.lr_warmup_steps < 0 or self.lr_decay_steps < 0:
            return [
                f"lr_warmup_steps and lr_decay_steps must be >= 0, got {self.lr_warmup_steps}, {self.lr_decay_steps}"
            ]
        if max(self.lr_warmup_steps, self.lr_decay_steps) > self.total_steps:
            # Overlapping warm-up and decay are fine (the schedule takes the smaller factor).
            return [
                f"lr_warmup_steps ({self.lr_warmup_steps}) and lr_decay_steps ({self.lr_decay_steps}) "
                f"must each be at most total_steps ({self.total_steps})"
            ]
        return []


def positive_int_problems(cfg: object, names: Iterable[str]) -> list[str]:
    """A problem for each named field that is not a positive integer (bools excluded)."""
    out = []
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} must be a positive integer, got {value!r}")
    return out


def non_negative_problems(cfg: object, names: Iterable[str]) -> list[str]:
    """A problem for each named numeric field that is negative."""
    return [f"{name} must be >= 0, got {getattr(cfg, name)}" for name in names if getattr(cfg, name) < 0]
