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

Two kernels compute the same maths (``TrainConfig.kernel``); a test checks one against the
other, outputs and gradients:

* ``reference``: the plain dense computation, autograd end to end.
* ``fast`` (TopK only): the encoder matmul stays dense (it has to find the top k), but the
  decoder, and the backward pass of both encoder and decoder, touch only the k selected
  latents per token. The dense step costs ~6 matmuls of batch x d_in x d_sae; this one costs
  one, plus sparse work proportional to batch x k x d_in.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from saelab.device import default_device
from saelab.train.config import TrainConfig

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass
class TrainStepOutput:
    """What one training forward pass produced.

    ``losses`` holds each part of ``loss`` already multiplied by its coefficient: always
    ``mse``, plus ``l1`` (relu), ``l0`` (jumprelu) or ``aux`` (topk). The metrics are
    detached. TopK's fast kernel never builds the dense ``[batch, d_sae]`` activations; it
    fills ``feat_values``/``feat_indices`` instead, and :attr:`feats` densifies on demand.
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
    feat_values: Float[Tensor, "batch k"] | None = None
    feat_indices: Int[Tensor, "batch k"] | None = None

    @property
    def feats(self) -> Float[Tensor, "batch d_sae"]:
        """Latent activations, dense."""
        if self.dense_feats is not None:
            return self.dense_feats
        assert self.feat_values is not None and self.feat_indices is not None
        dense = self.feat_values.new_zeros(self.feat_values.shape[0], self.fire_counts.shape[0])
        return dense.scatter(1, self.feat_indices, self.feat_values)

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
# Sparse kernels for TopK: only the selected (token, latent) pairs are touched.


def _scatter_rows(
    idx_BK: Int[Tensor, "batch k"], weight_BK: Float[Tensor, "batch k"], rows_BD: Float[Tensor, "batch d"], n: int
) -> Float[Tensor, "n d"]:
    """out[f] = sum over (b, j) with idx[b, j] == f of weight[b, j] * rows[b].

    A sparse [n, batch] matrix times rows: torch's COO spmm beats both index_add (which
    materialises batch*k*d products) and embedding_bag's backward on CPU; duplicates sum.
    """
    B, K = idx_BK.shape
    batch_BK = torch.arange(B, device=idx_BK.device).repeat_interleave(K)
    coo = torch.sparse_coo_tensor(
        torch.stack([idx_BK.reshape(-1), batch_BK]), weight_BK.reshape(-1), (n, B), check_invariants=False
    )
    return torch.sparse.mm(coo, rows_BD)


def _gathered_dots(
    idx_BK: Int[Tensor, "batch k"], a_BD: Float[Tensor, "batch d"], W_FD: Float[Tensor, "n d"]
) -> Float[Tensor, "batch k"]:
    """out[b, j] = a[b] . W[idx[b, j]] (a sampled dense-dense matmul).

    ``idx`` must be sorted along each row (a valid CSR pattern). sampled_addmm avoids
    gathering a batch x k x d tensor, which costs more than the arithmetic.
    """
    B, K = idx_BK.shape
    try:
        crow = torch.arange(0, B * K + 1, K, device=idx_BK.device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(
                crow, idx_BK.reshape(-1), a_BD.new_zeros(B * K), (B, W_FD.shape[0]), check_invariants=False
            )
        return torch.sparse.sampled_addmm(pattern, a_BD, W_FD.t(), beta=0.0).values().view(B, K)
    except (RuntimeError, NotImplementedError):  # dtypes or devices without a sparse kernel
        return torch.einsum("bkd,bd->bk", W_FD[idx_BK], a_BD)


class _SelectedPreActs(torch.autograd.Function):
    """Selected pre-activations ((x - b_dec) @ W_enc + b_enc)[b, idx[b, j]].

    ``pre`` (computed without autograd) supplies the values; the backward pass uses only the
    selected entries, so the encoder's gradient costs batch x k x d_in instead of a dense
    batch x d_in x d_sae matmul. Since sum_b dL/dpre[b] equals b_enc's gradient, b_dec's
    gradient through the input is one matrix-vector product.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, idx: Tensor, pre: Tensor
    ) -> Tensor:
        ctx.save_for_backward(x, b_dec, W_enc, idx)
        return pre.gather(1, idx).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_BK: Tensor) -> tuple[Tensor | None, ...]:
        x, b_dec, W_enc, idx = ctx.saved_tensors
        need_x, need_b_dec, need_W_enc, need_b_enc = ctx.needs_input_grad[:4]
        grad_BK = grad_BK.contiguous()
        d_sae = W_enc.shape[1]
        grad_x = grad_b_dec = grad_W_enc = grad_b_enc = None
        if need_b_enc or need_b_dec:
            grad_b_enc = grad_BK.new_zeros(d_sae).index_add_(0, idx.reshape(-1), grad_BK.reshape(-1))
        if need_W_enc:
            grad_W_enc = _scatter_rows(idx, grad_BK, x - b_dec, d_sae).t().contiguous()
        if need_b_dec:
            grad_b_dec = -(W_enc @ grad_b_enc)
        if need_x:
            grad_x = F.embedding_bag(idx, W_enc.t().contiguous(), per_sample_weights=grad_BK, mode="sum")
        return grad_x, grad_b_dec, grad_W_enc, grad_b_enc if need_b_enc else None, None, None


class _SparseDecode(torch.autograd.Function):
    """sum_j values[b, j] * W_dec[idx[b, j]], without the dense [batch, d_sae] activations."""

    @staticmethod
    def forward(ctx: Any, values: Tensor, idx: Tensor, W_dec: Tensor) -> Tensor:
        ctx.save_for_backward(values, idx, W_dec)
        return F.embedding_bag(idx, W_dec, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_BD: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        values, idx, W_dec = ctx.saved_tensors
        grad_BD = grad_BD.contiguous()
        grad_values = _gathered_dots(idx, grad_BD, W_dec) if ctx.needs_input_grad[0] else None
        grad_W_dec = _scatter_rows(idx, values, grad_BD, W_dec.shape[0]) if ctx.needs_input_grad[2] else None
        return grad_values, None, grad_W_dec


def sparse_decode(
    values: Float[Tensor, "batch k"], idx: Int[Tensor, "batch k"], W_dec: Float[Tensor, "d_sae d_in"]
) -> Float[Tensor, "batch d_in"]:
    """``scatter(values at idx) @ W_dec`` touching only the k rows per token (no bias).

    ``idx`` must hold distinct latents, sorted, in each row.
    """
    return _SparseDecode.apply(values, idx, W_dec)


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
        """Latent activations, computed in the parameters' dtype exactly as SAELens does."""
        x_BD = self._flat_input(x)
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
        return feats @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "*batch d_in"]) -> Float[Tensor, "*batch d_in"]:
        return self.decode(self.encode(x))

    # -- training ---------------------------------------------------------------------

    def forward_train(
        self, x: Float[Tensor, "batch d_in"], *, kernel: Literal["fast", "reference"] | None = None
    ) -> TrainStepOutput:
        """Reconstruction, losses and metrics for one batch (``kernel`` overrides the config).

        In training mode it also advances ``tokens_since_fired``; the AuxK loss reads the
        dead latents as they were before this batch.
        """
        if x.ndim != 2:
            raise ValueError(f"forward_train expects a [batch, d_in] tensor, got shape {tuple(x.shape)}")
        x_BD = self._flat_input(x)
        kernel = kernel or self.cfg.kernel
        if self.cfg.activation == "relu":
            out = self._train_relu(x_BD)
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
        """Set b_dec from a sample of activations (Bricken et al. 2023 use the geometric median)."""
        if method == "geometric_median":
            value = geometric_median(sample.reshape(-1, self.cfg.d_in))
        elif method == "mean":
            value = sample.reshape(-1, self.cfg.d_in).double().mean(0)
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
        selected = _SelectedPreActs.apply(x_BD, self.b_dec, self.W_enc, self.b_enc, all_idx, pre_BF)
        values = selected[:, :k].relu()
        x_hat = sparse_decode(values, idx, self.W_dec) + self.b_dec
        aux = x_hat.new_zeros(())
        if k_aux > 0:
            e_hat = sparse_decode(selected[:, k:], aux_idx, self.W_dec)
            aux = self._aux_loss(e_hat, x_BD, x_hat, scale)
        return self._output(x_BD, x_hat, {"aux": aux}, feat_values=values, feat_indices=idx)

    def _output(
        self,
        x_BD: Tensor,
        x_hat: Tensor,
        extra: dict[str, Tensor],
        *,
        dense_feats: Tensor | None = None,
        feat_values: Tensor | None = None,
        feat_indices: Tensor | None = None,
    ) -> TrainStepOutput:
        mse = (x_hat - x_BD).pow(2).sum(-1).mean()
        losses = {"mse": mse, **extra}
        loss = mse
        for part in extra.values():
            loss = loss + part
        with torch.no_grad():
            if dense_feats is not None:
                active = dense_feats > 0
                counts = active.sum(0)
            else:
                assert feat_values is not None and feat_indices is not None
                active = feat_values > 0
                counts = torch.zeros(self.cfg.d_sae, dtype=torch.int64, device=x_BD.device)
                counts.index_add_(0, feat_indices.reshape(-1), active.reshape(-1).to(torch.int64))
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
            feat_values=feat_values,
            feat_indices=feat_indices,
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

    def extra_repr(self) -> str:
        c = self.cfg
        extra = f", k={c.k}" if c.activation == "topk" else ""
        return f"activation={c.activation!r}, d_in={c.d_in}, d_sae={c.d_sae}{extra}, tied_decoder={c.tied_decoder}"
