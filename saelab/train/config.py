"""The typed configuration of one SAE training run: architecture, sparsity, optimiser, provenance.

One frozen dataclass, validated on construction, that round-trips through JSON. It imports
torch only to check a ``device`` string, so a command line can parse and check a
configuration cheaply.
Change a field with :func:`dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Activation = Literal["relu", "jumprelu", "topk"]
Kernel = Literal["fast", "reference"]
ComputeDtype = Literal["float32", "bfloat16"]
ParamDtype = Literal["float32", "float64"]
Normalization = Literal["expected_average_only_in", "none"]

ACTIVATIONS: tuple[str, ...] = ("relu", "jumprelu", "topk")
KERNELS: tuple[str, ...] = ("fast", "reference")
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
PARAM_DTYPES: tuple[str, ...] = ("float32", "float64")
NORMALIZATIONS: tuple[str, ...] = ("expected_average_only_in", "none")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines an SAE and how it is trained (not where the data comes from)."""

    activation: Activation = "topk"
    """Sparsity mechanism: ``relu`` (ReLU + L1 penalty), ``jumprelu`` (learned per-latent
    thresholds + L0 penalty, Rajamanoharan et al. 2024) or ``topk`` (keep the k largest,
    Gao et al. 2024)."""
    d_in: int = 576
    """Width of the activations the SAE reads (d_model for residual-stream hooks)."""
    d_sae: int = 4608
    """Number of latents (dictionary size)."""

    k: int = 32
    """topk only: latents kept per token."""
    l1_coefficient: float = 5.0
    """relu only: weight of the L1 penalty sum_i f_i * ||W_dec[i]||. Its scale depends on
    the scale of the activations; calibrate it to a target L0 rather than guessing."""
    tied_decoder: bool = False
    """relu only: decoder is the encoder's transpose (W_dec = W_enc.T), as in seed 001."""
    l0_coefficient: float = 1.0
    """jumprelu only: weight of the L0 penalty (expected number of active latents per token)."""
    jumprelu_init_threshold: float = 0.01
    """jumprelu only: initial value of every latent's threshold (>= 0)."""
    jumprelu_bandwidth: float = 0.05
    """jumprelu only: width of the rectangle kernel of the straight-through estimator; a
    threshold gets gradient from pre-activations within bandwidth/2 of it."""
    aux_k: int | None = None
    """topk only: dead latents used by the AuxK loss per token; None means d_in // 2 (the
    heuristic of Gao et al. 2024, Appendix B.1)."""
    aux_coefficient: float = 1 / 32
    """topk only: weight of the AuxK loss (Gao et al. use 1/32); 0 disables it."""
    normalize_activations: Normalization = "expected_average_only_in"
    """``expected_average_only_in`` (SAELens's name): multiply the inputs by one constant so
    their mean norm is sqrt(d_in), estimated on the first ``norm_batches`` batches. Residual
    norms here run from ~150 to ~650 with depth; on unit-scale inputs one lr and one sparsity
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
    """``fast``: TopK encodes densely but decodes and back-propagates through only the k
    active latents per token; ReLU does the same with each token's positive latents while
    they are few (``kernels.RELU_SPARSE_MAX_DENSITY``) and a leaner dense step otherwise.
    ``reference``: the plain dense computation. Same maths; the tests check one against the
    other. jumprelu always uses the dense kernel."""
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
        # JSON turns tuples into lists; accept that so from_json(to_json()) round-trips.
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        problems = _problems(self)
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))

    @property
    def resolved_aux_k(self) -> int:
        """aux_k with its default filled in (never more than d_sae)."""
        return min(self.aux_k if self.aux_k is not None else max(self.d_in // 2, 1), self.d_sae)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {unknown}. Valid fields: {sorted(valid)}")
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))


def _problems(cfg: TrainConfig) -> list[str]:
    """Every reason the configuration is invalid (empty when it is fine)."""
    out: list[str] = []
    if cfg.grad_clip_norm is not None and not cfg.grad_clip_norm > 0:
        out.append(f"grad_clip_norm must be positive or None, got {cfg.grad_clip_norm}")
    for name, value, choices in (
        ("activation", cfg.activation, ACTIVATIONS),
        ("kernel", cfg.kernel, KERNELS),
        ("compute_dtype", cfg.compute_dtype, COMPUTE_DTYPES),
        ("dtype", cfg.dtype, PARAM_DTYPES),
        ("normalize_activations", cfg.normalize_activations, NORMALIZATIONS),
    ):
        if value not in choices:
            out.append(f"{name}={value!r}; valid options: {list(choices)}")
    for name in ("d_in", "d_sae", "k", "total_steps", "batch_size", "dead_tokens_threshold", "norm_batches"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} must be a positive integer, got {value!r}")
    if out:
        return out  # the checks below assume the basics hold
    if cfg.activation == "topk" and cfg.k > cfg.d_sae:
        out.append(f"k={cfg.k} is larger than d_sae={cfg.d_sae}")
    if cfg.aux_k is not None and not (1 <= cfg.aux_k <= cfg.d_sae):
        out.append(f"aux_k must be in [1, d_sae={cfg.d_sae}] or None, got {cfg.aux_k}")
    if cfg.tied_decoder and cfg.activation != "relu":
        out.append(
            f"tied_decoder=True is only supported with activation='relu' (got {cfg.activation!r}): "
            "topk and jumprelu renormalise decoder rows after each step, which a tied encoder cannot follow"
        )
    for name in ("l1_coefficient", "l0_coefficient", "aux_coefficient", "jumprelu_init_threshold"):
        if getattr(cfg, name) < 0:
            out.append(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.jumprelu_bandwidth <= 0:
        out.append(f"jumprelu_bandwidth must be > 0, got {cfg.jumprelu_bandwidth}")
    if cfg.lr <= 0:
        out.append(f"lr must be > 0, got {cfg.lr}")
    if cfg.adam_eps <= 0:
        out.append(f"adam_eps must be > 0, got {cfg.adam_eps}")
    if len(cfg.adam_betas) != 2 or not all(0 <= b < 1 for b in cfg.adam_betas):
        out.append(f"adam_betas must be two numbers in [0, 1), got {cfg.adam_betas}")
    if cfg.lr_warmup_steps < 0 or cfg.lr_decay_steps < 0:
        out.append(f"lr_warmup_steps and lr_decay_steps must be >= 0, got {cfg.lr_warmup_steps}, {cfg.lr_decay_steps}")
    elif max(cfg.lr_warmup_steps, cfg.lr_decay_steps) > cfg.total_steps:
        # Overlapping warm-up and decay are fine (the schedule takes the smaller factor).
        out.append(
            f"lr_warmup_steps ({cfg.lr_warmup_steps}) and lr_decay_steps ({cfg.lr_decay_steps}) "
            f"must each be at most total_steps ({cfg.total_steps})"
        )
    if cfg.context_size is not None and cfg.context_size < 1:
        out.append(f"context_size must be a positive integer or None, got {cfg.context_size}")
    if cfg.device is not None:
        try:
            import torch

            torch.device(cfg.device)
        except (RuntimeError, ValueError) as err:
            out.append(f"device={cfg.device!r} is not a torch device ({err}); use e.g. 'cpu', 'cuda', 'cuda:0' or None")
    return out
