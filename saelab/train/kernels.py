"""SAE training kernels: ReLU + L1, JumpReLU + L0 and TopK + AuxK, in one ``nn.Module``.

Conventions (shared with SAELens, so that an exported SAE encodes identically there):

* ``feats = act((x - b_dec) @ W_enc + b_enc)`` and ``x_hat = feats @ W_dec + b_dec``, with
  ``W_enc [d_in, d_sae]`` and ``W_dec [d_sae, d_in]``.
* The reconstruction loss is the squared error summed over ``d_in`` and averaged over the
  batch, so sparsity coefficients mean the same as in SAELens.

Decoder norms. ReLU uses the L1 penalty weighted by decoder row norms (Anthropic, April
2024 update): the penalty is then invariant to trading a latent's magnitude against its
decoder norm, so nothing needs projecting after each step and Adam's update is never
undone. JumpReLU and TopK have no L1 term to cheat, and their papers keep decoder rows at
unit norm instead (Rajamanoharan et al. 2024; Gao et al. 2024); :meth:`TrainableSAE.post_step`
does that renormalisation.

Two kernels compute the same maths (``TrainConfig.kernel``); tests check one against the
other, outputs and gradients:

* ``reference``: the plain dense computation, autograd end to end. The dense step costs ~6
  matmuls of batch x d_in x d_sae.
* ``fast``, TopK: the encoder matmul stays dense (it has to find the top k), but the
  decoder, and the backward pass of both encoder and decoder, touch only the k selected
  latents per token: one dense matmul, plus sparse work proportional to batch x k x d_in.
* ``fast``, ReLU: the same sparse machinery over the (token, latent) pairs whose
  pre-activation is positive, a different number per token (:class:`ActivePairs`). This is
  exact, not an approximation: elsewhere ReLU's value and gradient are both 0. Sparse work
  only pays while few latents are active, so a batch with more than
  :data:`RELU_SPARSE_MAX_DENSITY` of its pre-activations positive (the start of training,
  before the L1 penalty bites) runs densely instead, from the same pre-activations. That
  dense step is still cheaper than the reference's: b_dec's gradient through the encoder
  input needs a matrix-vector product, not a sixth matmul, and the L1 term rides along in
  the decoder matmul.
* ``fast``, JumpReLU: the reference computation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from saelab.device import default_device
from saelab.train.config import TrainConfig

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

RELU_SPARSE_MAX_DENSITY = 0.1
"""The ReLU fast kernel takes its sparse path while at most this share of a batch's
pre-activations is positive (10% of 4608 latents is an L0 of 461), and its dense step above.

Measured on a 2-core AVX2 CPU, fp32, batch 4096, d_in 576, d_sae 4608: the sparse step
costs 0.25-0.3x the dense one at 1-2% density, 0.5-0.7x at 10% and breaks even between 15%
(1 thread) and 20-25% (2 threads), since its sparse work grows with the active pairs while
the dense step's does not. 10% keeps a margin for other CPUs. GPUs, where dense matmuls
are relatively cheaper, likely break even lower; that is unmeasured.
"""


@dataclass
class TrainStepOutput:
    """What one training forward pass produced.

    ``losses`` holds each part of ``loss`` already multiplied by its coefficient: always
    ``mse``, plus ``l1`` (relu), ``l0`` (jumprelu) or ``aux`` (topk). The metrics are
    detached. The fast kernels on sparse batches never build the dense ``[batch, d_sae]``
    activations; they fill ``sparse_feats`` instead, and :attr:`feats` densifies on demand.
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
    each token selected (TopK's k, ReLU's positive ones) and their values, some of which
    may be 0 (a TopK winner below 0)."""

    @property
    def feats(self) -> Float[Tensor, "batch d_sae"]:
        """Latent activations, dense."""
        if self.dense_feats is not None:
            return self.dense_feats
        assert self.sparse_feats is not None
        return self.sparse_feats.to_dense()

    @property
    def fired(self) -> Bool[Tensor, " d_sae"]:
        """Latents active on at least one token of the batch."""
        return self.fire_counts > 0


# ---------------------------------------------------------------------------------------
# JumpReLU: straight-through estimators with a rectangle kernel (Rajamanoharan et al. 2024).


def rectangle(u: Tensor) -> Tensor:
    """The kernel K(u) = 1 on (-1/2, 1/2), else 0."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLUFn(torch.autograd.Function):
    """pre * H(pre - threshold). The pre-activations get the exact gradient where the unit is
    open; the threshold, whose true gradient is a Dirac delta, gets the kernel estimate
    -(threshold / bandwidth) * K((pre - threshold) / bandwidth)."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        window = rectangle((pre - threshold) / bw)
        grad_threshold = -(threshold / bw) * (window * grad).sum(0)
        return grad_pre, grad_threshold, None


class _StepFn(torch.autograd.Function):
    """H(pre - threshold), the L0 count. As in the paper, only the threshold learns from it:
    gradient -(1 / bandwidth) * K((pre - threshold) / bandwidth), none to the encoder."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_threshold = -(1.0 / bw) * (rectangle((pre - threshold) / bw) * grad).sum(0)
        return None, grad_threshold, None


# ---------------------------------------------------------------------------------------
# Sparse kernels of the fast path: only the active (token, latent) pairs are touched.


def _csr(
    crow: Int[Tensor, " batch_plus_1"], cols: Int[Tensor, " nnz"], values: Tensor, shape: tuple[int, int]
) -> Tensor:
    """A sparse CSR tensor, without the invariant check or torch's beta warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


class ActivePairs(NamedTuple):
    """The (token, latent) pairs a fast kernel computes with, grouped by token (CSR order).

    Token ``b`` owns positions ``crow[b]:crow[b + 1]`` of ``rows`` and ``cols``. TopK gives
    every token the same number of pairs (k); ReLU's number varies per token and may be 0.
    """

    rows: Int[Tensor, " nnz"]
    """Token of each pair, ascending."""
    cols: Int[Tensor, " nnz"]
    """Latent of each pair. CSR kernels (``_gathered_dots``) need them ascending per token."""
    crow: Int[Tensor, " batch_plus_1"]
    """Offset of each token's first pair, then nnz (CSR row pointers)."""
    n_latents: int
    """d_sae, the number of columns the pairs index into."""

    @classmethod
    def per_token(cls, idx_BK: Int[Tensor, "batch k"], n_latents: int) -> ActivePairs:
        """k pairs for every token: latents ``idx[b]`` for token ``b``."""
        B, K = idx_BK.shape
        rows = torch.arange(B, device=idx_BK.device).repeat_interleave(K)
        crow = torch.arange(0, B * K + 1, K, device=idx_BK.device)
        return cls(rows, idx_BK.reshape(-1), crow, n_latents)

    @classmethod
    def from_mask(cls, active_BF: Bool[Tensor, "batch d_sae"]) -> ActivePairs:
        """Every True entry; nonzero() lists them row-major, so latents ascend per token."""
        rows, cols = active_BF.nonzero(as_tuple=True)
        crow = rows.new_zeros(active_BF.shape[0] + 1)
        torch.cumsum(torch.bincount(rows, minlength=active_BF.shape[0]), 0, out=crow[1:])
        return cls(rows, cols, crow, active_BF.shape[1])

    @property
    def n_tokens(self) -> int:
        return self.crow.shape[0] - 1

    def csr(self, values: Float[Tensor, " nnz"]) -> Float[Tensor, "batch d_sae"]:
        """The values as a sparse [batch, n_latents] CSR tensor."""
        return _csr(self.crow, self.cols, values, (self.n_tokens, self.n_latents))


def _scatter_rows(
    pairs: ActivePairs, weight_N: Float[Tensor, " nnz"], rows_BD: Float[Tensor, "batch d"]
) -> Float[Tensor, "n_latents d"]:
    """out[f] = sum over pairs (b, f) of weight * rows[b]; repeated pairs add up.

    A sparse [n_latents, batch] matrix times rows: torch's COO spmm beats both index_add
    (which materialises nnz*d products) and embedding_bag's backward on CPU.
    """
    coo = torch.sparse_coo_tensor(
        torch.stack([pairs.cols, pairs.rows]), weight_N, (pairs.n_latents, pairs.n_tokens), check_invariants=False
    )
    return torch.sparse.mm(coo, rows_BD)


def _gathered_dots(
    pairs: ActivePairs, a_BD: Float[Tensor, "batch d"], W_FD: Float[Tensor, "n_latents d"]
) -> Float[Tensor, " nnz"]:
    """out[p] = a[rows[p]] . W[cols[p]] (a sampled dense-dense matmul).

    The latents must ascend per token (a valid CSR pattern). sampled_addmm avoids gathering
    an nnz x d tensor, which costs more than the arithmetic.
    """
    try:
        pattern = pairs.csr(a_BD.new_zeros(pairs.cols.shape[0]))
        return torch.sparse.sampled_addmm(pattern, a_BD, W_FD.t(), beta=0.0).values()
    except (RuntimeError, NotImplementedError):  # dtypes or devices without a sparse kernel
        return (W_FD[pairs.cols] * a_BD[pairs.rows]).sum(-1)


def _sum_rows(
    pairs: ActivePairs, weight_N: Float[Tensor, " nnz"], W_FD: Float[Tensor, "n_latents d"]
) -> Float[Tensor, "batch d"]:
    """out[b] = sum over pairs (b, f) of weight * W[f]; a token without pairs gets 0."""
    return F.embedding_bag(
        pairs.cols, W_FD, pairs.crow, mode="sum", per_sample_weights=weight_N, include_last_offset=True
    )


class _SelectedPreActs(torch.autograd.Function):
    """Pre-activations ((x - b_dec) @ W_enc + b_enc)[b, f] at the given pairs, flat [nnz].

    ``pre`` (computed without autograd) supplies the values; the backward pass uses only the
    selected pairs, so the encoder's gradient costs nnz x d_in instead of a dense
    batch x d_in x d_sae matmul. Since sum_b dL/dpre[b] equals b_enc's gradient, b_dec's
    gradient through the input is one matrix-vector product.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, pre: Tensor, pairs: ActivePairs
    ) -> Tensor:
        ctx.save_for_backward(x, b_dec, W_enc)
        ctx.pairs = pairs  # index tensors outside the graph: safe to keep on ctx
        return pre[pairs.rows, pairs.cols].to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_N: Tensor) -> tuple[Tensor | None, ...]:
        x, b_dec, W_enc = ctx.saved_tensors
        pairs: ActivePairs = ctx.pairs
        need_x, need_b_dec, need_W_enc, need_b_enc = ctx.needs_input_grad[:4]
        grad_N = grad_N.contiguous()
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        if need_b_enc or need_b_dec:
            grad_b_enc = grad_N.new_zeros(pairs.n_latents).index_add_(0, pairs.cols, grad_N)
        if need_W_enc:
            grad_W_enc = _scatter_rows(pairs, grad_N, x - b_dec).t().contiguous()
        if need_b_dec:
            grad_b_dec = -(W_enc @ grad_b_enc)
        if need_x:
            grad_x = _sum_rows(pairs, grad_N, W_enc.t().contiguous())
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc if need_b_enc else None, None, None


class _SparseDecode(torch.autograd.Function):
    """out[b] = sum over pairs (b, f) of values * W_dec[f], without dense [batch, d_sae] activations."""

    @staticmethod
    def forward(ctx: Any, values: Tensor, W_dec: Tensor, pairs: ActivePairs) -> Tensor:
        ctx.save_for_backward(values, W_dec)
        ctx.pairs = pairs
        return _sum_rows(pairs, values, W_dec)

    @staticmethod
    def backward(ctx: Any, grad_BD: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        values, W_dec = ctx.saved_tensors
        pairs: ActivePairs = ctx.pairs
        grad_BD = grad_BD.contiguous()
        grad_values = _gathered_dots(pairs, grad_BD, W_dec) if ctx.needs_input_grad[0] else None
        grad_W_dec = _scatter_rows(pairs, values, grad_BD) if ctx.needs_input_grad[1] else None
        return grad_values, grad_W_dec, None


def sparse_decode(
    values: Float[Tensor, "batch k"], idx: Int[Tensor, "batch k"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, "batch d_in"]:
    """``scatter(values at idx) @ W_dec`` touching only the k rows per token (no bias).

    ``idx`` must hold distinct latents, sorted, in each row.
    """
    return _SparseDecode.apply(values.reshape(-1), W_dec, ActivePairs.per_token(idx, W_dec.shape[0]))


class _DenseReluEncode(torch.autograd.Function):
    """relu(pre) from pre-activations computed without autograd, with a dense backward.

    The ReLU fast kernel's fallback for dense batches: it has already computed ``pre`` to
    measure the density, so it must not run the encoder matmul again. Its backward also
    skips one of the reference's matmuls: autograd differentiates ``x - b_dec`` through a
    full batch x d_sae x d_in product, where b_dec needs only W_enc @ sum_b dL/dpre[b].
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, pre: Tensor, compute: torch.dtype
    ) -> Tensor:
        feats = pre.relu()  # a new tensor: ``pre`` may be a workspace the next step overwrites
        ctx.save_for_backward(x, b_dec, W_enc, feats)
        ctx.compute = compute
        return feats

    @staticmethod
    def backward(ctx: Any, grad_BF: Tensor) -> tuple[Tensor | None, ...]:
        x, b_dec, W_enc, feats = ctx.saved_tensors
        need_x, need_b_dec, need_W_enc, need_b_enc = ctx.needs_input_grad[:4]
        # ReLU's own backward (torch's relu differentiates this way): 0 where feats <= 0,
        # i.e. where pre <= 0, and one fused pass over the batch.
        grad_pre = torch.ops.aten.threshold_backward(grad_BF, feats, 0)
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        if need_b_enc or need_b_dec:
            grad_b_enc = grad_pre.sum(0, dtype=W_enc.dtype)
        if need_W_enc:
            grad_W_enc = _matmul((x - b_dec).t(), grad_pre, ctx.compute, W_enc.dtype)
        if need_b_dec:
            grad_b_dec = -(W_enc @ grad_b_enc)
        if need_x:
            grad_x = _matmul(grad_pre, W_enc.t(), ctx.compute, x.dtype)
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc if need_b_enc else None, None, None


# ---------------------------------------------------------------------------------------


def geometric_median(
    points: Float[Tensor, "n d"], *, max_iter: int = 100, tol: float = 1e-6
) -> Float[Tensor, " d"]:
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


def _column_counts(feats_BF: Float[Tensor, "batch d_sae"], rows_per_chunk: int = 128) -> Int[Tensor, " d_sae"]:
    """Positive entries per column, counted over blocks of rows.

    Counting a whole [4096, 4608] batch at once casts it to a fresh 150 MB int64 tensor,
    which the allocator maps from the OS and page-faults in on every step (~10x the
    arithmetic on CPU); blocks of a few MB reuse the same memory.
    """
    counts = torch.zeros(feats_BF.shape[1], dtype=torch.int64, device=feats_BF.device)
    for block in feats_BF.split(rows_per_chunk):
        counts += (block > 0).sum(0)
    return counts


def _matmul(a: Tensor, b: Tensor, compute: torch.dtype, out: torch.dtype) -> Tensor:
    """a @ b computed in ``compute`` and returned in ``out``.

    Explicit casts rather than torch.autocast: the same numbers on CPU and CUDA, and in the
    fast and reference kernels, with the small ops left in the master dtype.
    """
    return (a.to(compute) @ b.to(compute)).to(out)


class TrainableSAE(nn.Module):
    """An SAE being trained: parameters named as SAELens names them, and the training losses.

    Parameters: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]`` (absent
    with a tied decoder, where ``sae.W_dec`` is the view ``W_enc.T``), ``b_dec [d_in]``, and
    for jumprelu ``threshold [d_sae]``. Buffer: ``tokens_since_fired [d_sae]``, updated by
    :meth:`forward_train` in training mode (like BatchNorm's running statistics), so it is
    part of ``state_dict`` and a resumed run continues it.
    """

    W_enc: nn.Parameter
    b_enc: nn.Parameter
    b_dec: nn.Parameter
    tokens_since_fired: Tensor

    def __init__(self, cfg: TrainConfig, device: str | torch.device | None = None):
        super().__init__()
        self.cfg = cfg
        device = torch.device(device or cfg.device or default_device())
        dtype = _TORCH_DTYPES[cfg.dtype]
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
        if not cfg.tied_decoder:
            self.W_dec = nn.Parameter(W_dec.to(device, dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=dtype))
        if cfg.activation == "jumprelu":
            self.threshold = nn.Parameter(
                torch.full((cfg.d_sae,), cfg.jumprelu_init_threshold, device=device, dtype=dtype)
            )
        self.register_buffer("tokens_since_fired", torch.zeros(cfg.d_sae, dtype=torch.int64, device=device))
        # The constant the inputs are multiplied by before anything else (see
        # TrainConfig.normalize_activations); set once by the trainer, saved with the state.
        self.register_buffer("input_scale", torch.ones((), dtype=dtype, device=device))
        self._workspace: Tensor | None = None  # scratch memory of the fast kernel, not state

    def __getattr__(self, name: str) -> Any:
        # A tied decoder has no W_dec parameter; expose the transpose under the same name so
        # every caller (losses, export, analysis) reads sae.W_dec either way.
        if name == "W_dec" and "W_dec" not in self._parameters and self.cfg.tied_decoder:
            return self._parameters["W_enc"].t()
        return super().__getattr__(name)

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    # -- inference --------------------------------------------------------------------

    def encode(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_sae"]:
        """Latent activations of raw activations ``x``, computed in the parameters' dtype
        exactly as SAELens computes them for the exported SAE."""
        x_BD = self._flat_input(x) * self.input_scale
        pre_BF = (x_BD - self.b_dec) @ self.W_enc + self.b_enc
        if self.cfg.activation == "relu":
            feats = pre_BF.relu()
        elif self.cfg.activation == "jumprelu":
            feats = pre_BF.relu() * (pre_BF > self.threshold)
        else:
            values, idx = pre_BF.topk(self.cfg.k, dim=-1, sorted=False)
            feats = torch.zeros_like(pre_BF).scatter(-1, idx, values.relu())
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

        In training mode it also advances ``tokens_since_fired``; the AuxK loss reads the
        dead latents as they were before this batch.
        """
        if x.ndim != 2:
            raise ValueError(f"forward_train expects a [batch, d_in] tensor, got shape {tuple(x.shape)}")
        x_BD = self._scaled(self._flat_input(x))
        kernel = kernel or self.cfg.kernel
        if self.cfg.activation == "relu":
            out = self._train_relu_fast(x_BD) if kernel == "fast" else self._train_relu(x_BD)
        elif self.cfg.activation == "jumprelu":
            out = self._train_jumprelu(x_BD)
        elif kernel == "fast":
            out = self._train_topk_fast(x_BD)
        else:
            out = self._train_topk_reference(x_BD)
        if self.training:
            self._record_firing(out.fired, x_BD.shape[0])
        return out

    @torch.no_grad()
    def post_step(self) -> None:
        """Call after each optimiser step: restores the constraints the optimiser ignores."""
        if self.cfg.activation in ("topk", "jumprelu"):
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))
        if self.cfg.activation == "jumprelu":
            # A negative threshold would let negative pre-activations through and break the
            # equality with ReLU-then-gate that SAELens's JumpReLU encode relies on.
            self.threshold.clamp_(min=0.0)

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

    # -- per-activation losses --------------------------------------------------------

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
        which costs as much as a third of the matmul; reusing the memory avoids that. Only the
        fast kernel may do this: it reads the buffer during the forward pass and never after.
        """
        cd = self.compute_dtype
        shape = (x_BD.shape[0], self.cfg.d_sae)
        ws = self._workspace
        if ws is None or ws.shape != shape or ws.dtype != cd or ws.device != x_BD.device:
            ws = self._workspace = torch.empty(shape, dtype=cd, device=x_BD.device)
        return torch.addmm(self.b_enc.to(cd), (x_BD - self.b_dec).to(cd), self.W_enc.to(cd), out=ws)

    def _decode_train(self, feats_BF: Tensor) -> Float[Tensor, "batch d_in"]:
        return _matmul(feats_BF, self.W_dec, self.compute_dtype, self.dtype) + self.b_dec

    def _train_relu(self, x_BD: Tensor) -> TrainStepOutput:
        feats_BF = self._pre_acts(x_BD).relu()
        x_hat = self._decode_train(feats_BF)
        l1 = (feats_BF * self.W_dec.norm(dim=1)).sum(-1).mean()
        return self._output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, dense_feats=feats_BF)

    def _train_jumprelu(self, x_BD: Tensor) -> TrainStepOutput:
        pre_BF = self._pre_acts(x_BD)
        bw = self.cfg.jumprelu_bandwidth
        feats_BF = _JumpReLUFn.apply(pre_BF, self.threshold, bw)
        x_hat = self._decode_train(feats_BF)
        # Summed in the master dtype: bfloat16 cannot count past 256 exactly.
        l0 = _StepFn.apply(pre_BF, self.threshold, bw).sum(-1, dtype=self.dtype).mean()
        return self._output(x_BD, x_hat, {"l0": self.cfg.l0_coefficient * l0}, dense_feats=feats_BF)

    def _aux_plan(self) -> tuple[Bool[Tensor, " d_sae"], int, float]:
        """Dead mask, how many dead latents AuxK uses, and its down-weighting.

        With fewer dead latents than aux_k, the loss is scaled by n_dead / aux_k (as in
        EleutherAI's sparsify): a handful of dead latents cannot explain the whole residual,
        and a full-weight loss would yank them around.
        """
        dead = self.dead_mask()
        n_dead = int(dead.sum()) if self.cfg.aux_coefficient > 0 else 0
        aux_k = self.cfg.resolved_aux_k
        return dead, min(aux_k, n_dead), min(n_dead / aux_k, 1.0)

    def _aux_loss(self, e_hat_BD: Tensor, x_BD: Tensor, x_hat_BD: Tensor, scale: float) -> Tensor:
        # Dead latents learn to predict what the live ones missed (Gao et al. 2024, A.2);
        # the residual is a fixed target, and includes b_dec, so e_hat has no bias.
        residual = (x_BD - x_hat_BD).detach()
        return self.cfg.aux_coefficient * scale * (e_hat_BD - residual).pow(2).sum(-1).mean()

    def _train_topk_reference(self, x_BD: Tensor) -> TrainStepOutput:
        k = self.cfg.k
        dead, k_aux, scale = self._aux_plan()
        pre_BF = self._pre_acts(x_BD)
        values, idx = pre_BF.topk(k, dim=-1, sorted=False)
        feats_BF = x_BD.new_zeros(pre_BF.shape).scatter(-1, idx, values.to(self.dtype).relu())
        x_hat = self._decode_train(feats_BF)
        aux = x_hat.new_zeros(())
        if k_aux > 0:
            # No ReLU on the auxiliary latents: dead latents mostly have negative
            # pre-activations, and a ReLU would block the very gradient meant to revive them.
            aux_values, aux_idx = pre_BF.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            aux_feats = x_BD.new_zeros(pre_BF.shape).scatter(-1, aux_idx, aux_values.to(self.dtype))
            e_hat = _matmul(aux_feats, self.W_dec, self.compute_dtype, self.dtype)
            aux = self._aux_loss(e_hat, x_BD, x_hat, scale)
        return self._output(x_BD, x_hat, {"aux": aux}, dense_feats=feats_BF)

    def _train_topk_fast(self, x_BD: Tensor) -> TrainStepOutput:
        k = self.cfg.k
        dead, k_aux, scale = self._aux_plan()
        with torch.no_grad():
            pre_BF = self._pre_acts_into_workspace(x_BD)
            # Sorted indices make each row a valid CSR pattern for the sparse kernels.
            idx = pre_BF.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values
            all_idx = idx
            if k_aux > 0:
                dead_ids = dead.nonzero().squeeze(1)
                local = pre_BF.index_select(1, dead_ids).topk(k_aux, dim=-1, sorted=False).indices
                aux_idx = dead_ids[local].sort(dim=-1).values
                all_idx = torch.cat([idx, aux_idx], dim=1)
        # One sparse encoder backward for the TopK and AuxK selections together.
        selected = _SelectedPreActs.apply(
            x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, ActivePairs.per_token(all_idx, self.cfg.d_sae)
        ).view(x_BD.shape[0], -1)
        values = selected[:, :k].relu()
        pairs = ActivePairs.per_token(idx, self.cfg.d_sae)
        x_hat = _SparseDecode.apply(values.reshape(-1), self.W_dec, pairs) + self.b_dec
        aux = x_hat.new_zeros(())
        if k_aux > 0:
            e_hat = sparse_decode(selected[:, k:], aux_idx, self.W_dec)
            aux = self._aux_loss(e_hat, x_BD, x_hat, scale)
        return self._output(x_BD, x_hat, {"aux": aux}, sparse_feats=pairs.csr(values.reshape(-1)))

    def _train_relu_fast(self, x_BD: Tensor) -> TrainStepOutput:
        """_train_relu's maths, touching only the positive pre-activations when they are few."""
        with torch.no_grad():
            pre_BF = self._pre_acts_into_workspace(x_BD)
            active_BF = pre_BF > 0
            density = torch.count_nonzero(active_BF).item() / active_BF.numel()
        if density <= RELU_SPARSE_MAX_DENSITY:
            return self._train_relu_sparse(x_BD, pre_BF, ActivePairs.from_mask(active_BF))
        return self._train_relu_dense(x_BD, pre_BF)

    def _train_relu_sparse(self, x_BD: Tensor, pre_BF: Tensor, pairs: ActivePairs) -> TrainStepOutput:
        # The pairs are exactly the positive pre-activations, where ReLU is the identity with
        # gradient 1; elsewhere its value and its gradient are both 0, so leaving them out
        # is exact, not an approximation.
        values = _SelectedPreActs.apply(x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, pairs)
        W_dec = self.W_dec
        x_hat = _SparseDecode.apply(values, W_dec, pairs) + self.b_dec
        l1 = (values * W_dec.norm(dim=1)[pairs.cols]).sum() / x_BD.shape[0]
        return self._output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, sparse_feats=pairs.csr(values))

    def _train_relu_dense(self, x_BD: Tensor, pre_BF: Tensor) -> TrainStepOutput:
        feats_BF = _DenseReluEncode.apply(x_BD, self.b_dec, self.W_enc, self.b_enc, pre_BF, self.compute_dtype)
        # Each token's L1 term, feats @ ||W_dec rows||, rides along in the decoder matmul as
        # one more output column, so its gradient arrives inside the decoder's; the
        # reference's product allocates and sweeps [batch, d_sae] tensors three more times.
        W_aug = torch.cat([self.W_dec, self.W_dec.norm(dim=1, keepdim=True)], dim=1)
        out_BD = _matmul(feats_BF, W_aug, self.compute_dtype, self.dtype)
        x_hat = out_BD[:, :-1] + self.b_dec
        l1 = out_BD[:, -1].mean()
        return self._output(x_BD, x_hat, {"l1": self.cfg.l1_coefficient * l1}, dense_feats=feats_BF)

    def _output(
        self,
        x_BD: Tensor,
        x_hat: Tensor,
        extra: dict[str, Tensor],
        *,
        dense_feats: Tensor | None = None,
        sparse_feats: Tensor | None = None,
    ) -> TrainStepOutput:
        mse = (x_hat - x_BD).pow(2).sum(-1).mean()
        losses = {"mse": mse, **extra}
        loss = mse
        for part in extra.values():
            loss = loss + part
        with torch.no_grad():
            if dense_feats is not None:
                counts = _column_counts(dense_feats)
            else:
                assert sparse_feats is not None
                active = sparse_feats.values() > 0
                counts = torch.zeros(self.cfg.d_sae, dtype=torch.int64, device=x_BD.device)
                counts.index_add_(0, sparse_feats.col_indices(), active.to(torch.int64))
            n = x_BD.shape[0]
            l0 = counts.sum().to(x_BD.dtype) / n
            total = (x_BD - x_BD.mean(0)).pow(2).sum().clamp_min(torch.finfo(x_BD.dtype).tiny)
            explained = 1 - mse.detach() * n / total
        return TrainStepOutput(
            x_hat=x_hat,
            loss=loss,
            losses=losses,
            l0=l0,
            explained_variance=explained,
            fire_counts=counts,
            dense_feats=dense_feats,
            sparse_feats=sparse_feats,
        )

    @torch.no_grad()
    def _record_firing(self, fired: Bool[Tensor, " d_sae"], n_tokens: int) -> None:
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0

    @torch.no_grad()
    def set_input_scale(self, scale: float) -> None:
        """Set the constant inputs are multiplied by (before training starts)."""
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"input scale must be a finite positive number, got {scale}")
        self.input_scale.fill_(scale)

    def _scaled(self, x_BD: Tensor) -> Float[Tensor, "batch d_in"]:
        # One elementwise pass, small beside the matmuls; multiplying by 1.0 is exact.
        return x_BD * self.input_scale

    def _flat_input(self, x: Tensor) -> Float[Tensor, "batch d_in"]:
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"Expected activations with last dimension d_in={self.cfg.d_in}, got shape {tuple(x.shape)}"
            )
        return x.reshape(-1, self.cfg.d_in).to(device=self.device, dtype=self.dtype)

    def extra_repr(self) -> str:
        c = self.cfg
        extra = f", k={c.k}" if c.activation == "topk" else ""
        return f"activation={c.activation!r}, d_in={c.d_in}, d_sae={c.d_sae}{extra}, tied_decoder={c.tied_decoder}"
