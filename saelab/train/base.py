"""The training module every SAE architecture shares, and what one training forward pass returns.

Conventions (shared with SAELens, so that an exported SAE encodes identically there):

* ``feats = act((x - b_dec) @ W_enc + b_enc)`` and ``x_hat = feats @ W_dec + b_dec``, with
  ``W_enc [d_in, d_sae]`` and ``W_dec [d_sae, d_in]``.
* The reconstruction loss is the squared error summed over ``d_in`` and averaged over the
  batch, so sparsity coefficients mean the same as in SAELens.

:class:`TrainableSAE` holds the parameters, input normalisation, ``b_dec`` initialisation,
dead-latent bookkeeping and the dense pieces of a step. Each architecture's file subclasses
it and fills in the hooks: ``_activate`` (inference), ``_train_forward`` (its kernels),
optionally ``_init_extra``, ``_observe``, ``post_step`` and the SAELens export
(``sae_lens_architecture``, ``sae_lens_cfg_fields``, ``sae_lens_tensors``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from saelab._util.device import default_device
from saelab.train.config import TrainConfig
from saelab.train.kernels.dense import column_counts, matmul

if TYPE_CHECKING:
    from saelab.distributed.replicas import Replicas

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

C = TypeVar("C", bound=TrainConfig)


@dataclass
class TrainStepOutput:
    """What one training forward pass produced.

    ``losses`` holds each part of ``loss`` already multiplied by its coefficient: always
    ``mse``, plus the architecture's (``l1``, ``l0`` or ``aux``). The metrics are detached.
    Sparse kernels never build the dense ``[batch, d_sae]`` activations; they fill
    ``sparse_feats`` instead, and :attr:`feats` densifies on demand.
    """

    x_hat: Float[Tensor, "batch d_in"]
    loss: Float[Tensor, ""]
    losses: dict[str, Float[Tensor, ""]]
    l0: Float[Tensor, ""]
    """Mean number of active latents per token."""
    explained_variance: Float[Tensor, ""]
    """1 - sum of squared errors / sum of squared deviations from the batch mean."""
    fire_counts: Int[Tensor, " d_sae"]
    """Tokens of the batch on which each latent was active (feature density, summed)."""
    dense_feats: Float[Tensor, "batch d_sae"] | None = None
    sparse_feats: Float[Tensor, "batch d_sae"] | None = None
    """The activations as a sparse CSR tensor (``torch.sparse_csr`` layout): the latents
    each token selected and their values, some of which may be 0 (a TopK winner below 0)."""

    @property
    def feats(self) -> Float[Tensor, "batch d_sae"]:
        """Latent activations, dense."""
        if self.dense_feats is not None:
            return self.dense_feats
        assert self.sparse_feats is not None
        return self.sparse_feats.to_dense()

    @property
    def active_values(self) -> Float[Tensor, " n_active"]:
        """The positive activations, flat, without densifying sparse ones."""
        if self.dense_feats is not None:
            values = self.dense_feats
        else:
            assert self.sparse_feats is not None
            values = self.sparse_feats.values()
        return values[values > 0]

    @property
    def fired(self) -> Bool[Tensor, " d_sae"]:
        """Latents active on at least one token of the batch."""
        return self.fire_counts > 0


def geometric_median(points: Float[Tensor, "n d"], *, max_iter: int = 100, tol: float = 1e-6) -> Float[Tensor, " d"]:
    """The point minimising the sum of Euclidean distances (Weiszfeld's iterations).

    Robust to the few huge-norm outliers residual streams have (BOS), unlike the mean.
    """
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"geometric_median needs a non-empty [n, d] tensor, got shape {tuple(points.shape)}")
    points = points.double()
    median = points.mean(0)
    for _ in range(max_iter):
        inv_dist = 1.0 / (points - median).norm(dim=1).clamp_min(1e-12)
        new = (inv_dist[:, None] * points).sum(0) / inv_dist.sum()
        shift = (new - median).norm()
        median = new
        if shift <= tol * median.norm().clamp_min(1.0):
            break
    return median


class TrainableSAE(nn.Module, Generic[C]):
    """An SAE being trained: parameters named as SAELens names them, and the training losses.

    Parameters: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``,
    ``b_dec [d_in]``, plus whatever the architecture adds. Buffers: ``tokens_since_fired
    [d_sae]``, updated by :meth:`forward_train` in training mode (like BatchNorm's running
    statistics), so it is part of ``state_dict`` and a resumed run continues it; and
    ``input_scale``, the constant inputs are multiplied by (``TrainConfig.normalize_activations``).
    Build one with :func:`saelab.train.registry.make_sae` or the architecture's class.
    """

    sae_lens_architecture: ClassVar[str] = ""
    """The SAELens architecture this one is exported as (``standard``, ``jumprelu``, ``topk``)."""
    unit_norm_decoder: ClassVar[bool] = True
    """Whether :meth:`post_step` renormalises decoder rows to unit norm."""

    W_enc: nn.Parameter
    b_enc: nn.Parameter
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    tokens_since_fired: Tensor
    input_scale: Tensor

    def __init__(self, cfg: C, device: str | torch.device | None = None):
        super().__init__()
        self.cfg: C = cfg
        device = torch.device(device or cfg.device or default_device())
        dtype = TORCH_DTYPES[cfg.dtype]
        self.compute_dtype = torch.bfloat16 if cfg.compute_dtype == "bfloat16" else dtype
        # Initialise on CPU with our own generator: the same seed gives the same SAE on any
        # device and whatever else touched the global RNG.
        gen = torch.Generator().manual_seed(cfg.seed)
        W_dec = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        # Encoder = decoder transpose (Gao et al. 2024; Anthropic April 2024 update): each
        # latent starts by detecting the direction it writes, so the initial reconstruction
        # is a sensible projection of x and few latents start out dead.
        self.W_enc = nn.Parameter(W_dec.t().contiguous().to(device, dtype))
        if not self._tied_decoder():
            self.W_dec = nn.Parameter(W_dec.to(device, dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))
        self._init_extra(device, dtype)
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_sae, dtype=torch.int64, device=device))
        self.register_buffer("input_scale", torch.ones((), dtype=dtype, device=device))
        self._scratch: dict[tuple[Any, ...], Tensor] = {}  # memory of the sparse kernels, not state
        self.replicas: Replicas | None = None
        """The ranks holding copies of this SAE in data-parallel training (set by the trainer),
        whose batches together make the global batch; None when training alone."""

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    # -- hooks the architectures fill in ----------------------------------------------

    def _tied_decoder(self) -> bool:
        """Whether ``W_dec`` is the encoder's transpose rather than a parameter of its own."""
        return False

    def _init_extra(self, device: torch.device, dtype: torch.dtype) -> None:
        """Create the architecture's own parameters and buffers."""

    def _activate(self, pre_BF: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        """Inference activations from pre-activations (what SAELens's encode computes)."""
        raise NotImplementedError

    def _train_forward(self, x_BD: Float[Tensor, "batch d_in"], kernel: str) -> TrainStepOutput:
        """Reconstruction and losses of a normalised batch with the named kernel."""
        raise NotImplementedError

    def _observe(self, out: TrainStepOutput) -> None:
        """Update running statistics from a training-mode step (after the firing counts)."""

    def sae_lens_cfg_fields(self) -> dict[str, Any]:
        """Fields the architecture adds to the exported ``cfg.json``."""
        return {}

    def sae_lens_tensors(self) -> dict[str, Tensor]:
        """Tensors the architecture adds to the exported weights (unscaled: pre-activation
        units do not change when the input scale is folded in)."""
        return {}

    # -- inference --------------------------------------------------------------------

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations of raw activations ``x``, computed in the parameters' dtype
        exactly as SAELens computes them for the exported SAE."""
        x_BD = self._flat_input(x) * self.input_scale
        feats = self._activate((x_BD - self.b_dec) @ self.W_enc + self.b_enc)
        return feats.reshape(*x.shape[:-1], self.cfg.d_sae)

    def decode(self, feats: Float[Tensor, "*batch d_sae"]) -> Float[Tensor, "*batch d_in"]:
        """Reconstruction in the raw activations' scale."""
        return (feats @ self.W_dec + self.b_dec) / self.input_scale

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_in"]:
        return self.decode(self.encode(x))

    # -- training ---------------------------------------------------------------------

    def forward_train(
        self, x: Float[Tensor, "batch d_in"], *, kernel: Literal["fast", "reference"] | None = None
    ) -> TrainStepOutput:
        """Reconstruction, losses and metrics for one batch of raw activations (``kernel``
        overrides the config). The losses and ``x_hat`` are in the normalised space the SAE
        trains in (``x * input_scale``), so coefficients do not depend on the layer's scale.

        In training mode it also advances ``tokens_since_fired`` and the architecture's
        running statistics; the AuxK loss reads the dead latents as they were before this batch.
        """
        if x.ndim != 2:
            raise ValueError(f"forward_train expects a [batch, d_in] tensor, got shape {tuple(x.shape)}")
        x_BD = self._flat_input(x) * self.input_scale  # multiplying by 1.0 is exact
        out = self._train_forward(x_BD, kernel or self.cfg.kernel)
        n_tokens = x_BD.shape[0]
        if self.replicas is not None and self.training:
            # Every copy must agree on which latents are dead, so count firing over the
            # global batch; L0 then describes the global batch too.
            out.fire_counts = self.replicas.sum_(out.fire_counts.clone())
            n_tokens *= self.replicas.size
            out.l0 = out.fire_counts.sum().to(x_BD.dtype) / n_tokens
        if self.training:
            self._record_firing(out.fired, n_tokens)
            self._observe(out)
        return out

    @torch.no_grad()
    def post_step(self) -> None:
        """Call after each optimiser step: restores the constraints the optimiser ignores."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def dead_mask(self) -> Bool[Tensor, " d_sae"]:
        """Latents that have not fired for ``cfg.dead_tokens_threshold`` training tokens."""
        return self.tokens_since_fired >= self.cfg.dead_tokens_threshold

    @torch.no_grad()
    def init_b_dec(
        self,
        sample: Float[Tensor, "n d_in"],
        method: Literal["geometric_median", "mean", "zeros"] = "geometric_median",
    ) -> Float[Tensor, " d_in"]:
        """Set b_dec from a sample of raw activations (Bricken et al. 2023 use the geometric
        median), in the normalised space the SAE trains in."""
        sample = sample.reshape(-1, self.cfg.d_in).to(self.input_scale.device) * self.input_scale
        if method == "geometric_median":
            value = geometric_median(sample)
        elif method == "mean":
            value = sample.double().mean(0)
        elif method == "zeros":
            value = torch.zeros(self.cfg.d_in)
        else:
            raise ValueError(f"Unknown b_dec init method {method!r}; valid: 'geometric_median', 'mean', 'zeros'")
        self.b_dec.copy_(value.to(self.b_dec))
        return self.b_dec.detach().clone()

    @torch.no_grad()
    def set_input_scale(self, scale: float) -> None:
        """Set the constant inputs are multiplied by (before training starts)."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"input scale must be a finite positive number, got {scale}")
        self.input_scale.fill_(scale)

    # -- pieces of a step the architectures share ---------------------------------------

    def _pre_acts(self, x_BD: Tensor) -> Float[Tensor, "batch d_sae"]:
        """Pre-activations in the compute dtype: with bfloat16 the [batch, d_sae] tensor and
        everything that scans it (ReLU, top-k) move half the bytes."""
        cd = self.compute_dtype
        # addmm fuses the bias into the GEMM rather than sweeping batch x d_sae once more.
        return torch.addmm(self.b_enc.to(cd), (x_BD - self.b_dec).to(cd), self.W_enc.to(cd))

    @torch.no_grad()
    def _pre_acts_into_workspace(self, x_BD: Tensor) -> Float[Tensor, "batch d_sae"]:
        """_pre_acts without autograd, written into a buffer reused across steps.

        On CPU a fresh [4096, 4608] result is a new mmap whose pages fault in on first touch,
        which costs as much as a third of the matmul; reusing the memory avoids that. Only a
        sparse kernel may do this: it reads the buffer during the forward pass and never after,
        which also lets SAEs stepped one after another share it (:func:`share_scratch`).
        """
        cd = self.compute_dtype
        key = (x_BD.shape[0], self.cfg.d_sae, cd, x_BD.device)
        ws = self._scratch.get(key)
        if ws is None:
            ws = self._scratch[key] = torch.empty(key[:2], dtype=cd, device=x_BD.device)
        return torch.addmm(self.b_enc.to(cd), (x_BD - self.b_dec).to(cd), self.W_enc.to(cd), out=ws)

    def _decode_train(self, feats_BF: Tensor) -> Float[Tensor, "batch d_in"]:
        return matmul(feats_BF, self.W_dec, self.compute_dtype, self.dtype) + self.b_dec

    def _step_output(
        self,
        x_BD: Tensor,
        x_hat: Tensor,
        extra: dict[str, Tensor],
        *,
        dense_feats: Tensor | None = None,
        sparse_feats: Tensor | None = None,
    ) -> TrainStepOutput:
        """The loss (mse plus the weighted ``extra`` parts) and the step's metrics."""
        mse = (x_hat - x_BD).pow(2).sum(-1).mean()
        loss = mse
        for part in extra.values():
            loss = loss + part
        with torch.no_grad():
            if dense_feats is not None:
                counts = column_counts(dense_feats)
            else:
                assert sparse_feats is not None
                active = sparse_feats.values() > 0
                counts = torch.zeros(self.cfg.d_sae, dtype=torch.int64, device=x_BD.device)
                counts.index_add_(0, sparse_feats.col_indices(), active.to(torch.int64))
            n = x_BD.shape[0]
            total = (x_BD - x_BD.mean(0)).pow(2).sum().clamp_min(torch.finfo(x_BD.dtype).tiny)
            explained = 1 - mse.detach() * n / total
        return TrainStepOutput(
            x_hat=x_hat,
            loss=loss,
            losses={"mse": mse, **extra},
            l0=counts.sum().to(x_BD.dtype) / n,
            explained_variance=explained,
            fire_counts=counts,
            dense_feats=dense_feats,
            sparse_feats=sparse_feats,
        )

    @torch.no_grad()
    def _record_firing(self, fired: Bool[Tensor, " d_sae"], n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0

    def _flat_input(self, x: Tensor) -> Float[Tensor, "batch d_in"]:
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"Expected activations with last dimension d_in={self.cfg.d_in}, got shape {tuple(x.shape)}"
            )
        return x.reshape(-1, self.cfg.d_in).to(device=self.device, dtype=self.dtype)

    def _extra_repr_fields(self) -> str:
        """The architecture's own settings for ``repr``, e.g. ``", k=32"``."""
        return ""

    def extra_repr(self) -> str:
        c = self.cfg
        return f"activation={c.activation!r}, d_in={c.d_in}, d_sae={c.d_sae}{self._extra_repr_fields()}"


def share_scratch(saes: Sequence[TrainableSAE[Any]]) -> None:
    """Give SAEs that are stepped one after another (never at the same time) one set of scratch
    buffers, one per shape: a sweep of N same-shape members then holds one [batch, d_sae]
    pre-activation buffer instead of N (75 MB each at batch 4,096 and d_sae 4,608)."""
    shared: dict[tuple[Any, ...], Tensor] = {}
    for sae in saes:
        sae._scratch = shared  # noqa: SLF001 (this module's own attribute)
