"""Tiny configs, SAEs with non-trivial weights, planted sparse data, and one step under both
kernels: what the training tests share."""

from __future__ import annotations

import copy
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from saelab.train import TrainConfig, config_for, make_sae
from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.optim import make_optimizer, make_scheduler, train_step

S = TypeVar("S", bound=TrainableSAE[Any])
StepResult = tuple[TrainStepOutput, dict[str, Tensor], Tensor]

ARCHITECTURES = ("relu", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk")
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
"""Where the fast-vs-reference checks run: CUDA too, on a machine that has it."""

# Per architecture: a setting that learns the planted dictionary in 200 steps.
LEARNS = {
    "relu": dict(l1_coefficient=0.05),
    "jumprelu": dict(l0_coefficient=0.05, jumprelu_init_threshold=0.1, jumprelu_bandwidth=0.1),
    "topk": dict(k=2),
    "batchtopk": dict(k=2),
    "matryoshka_batchtopk": dict(k=2, prefix_sizes=(16,)),  # two levels: the ladder costs full-width EV
}


def tiny(activation: str = "topk", **kw: Any) -> TrainConfig:
    """d_in 8, d_sae 16, batch 32, flat schedule; k=3 where the architecture has a k."""
    base: dict[str, Any] = dict(d_in=8, d_sae=16, device="cpu", batch_size=32, total_steps=100,
                                lr_warmup_steps=0, lr_decay_steps=0)
    if activation in ("topk", "batchtopk", "matryoshka_batchtopk"):  # the architectures with a k
        base["k"] = 3
    return config_for(activation, **{**base, **kw})


def narrow(sae: TrainableSAE[Any], cls: type[S]) -> S:
    """``sae``, checked to be (and typed as) the architecture's class ``cls``."""
    assert isinstance(sae, cls)
    return sae


def randomised(cfg: TrainConfig, seed: int = 1) -> TrainableSAE[Any]:
    """An SAE with non-trivial biases (so tests do not pass just because b_dec = b_enc = 0)."""
    sae = make_sae(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(cfg.d_sae, generator=gen))
        sae.b_dec.copy_(0.1 * torch.randn(cfg.d_in, generator=gen))
        threshold = getattr(sae, "threshold", None)  # JumpReLU's per-latent thresholds
        if isinstance(threshold, Tensor):
            threshold.copy_(0.3 * torch.rand(cfg.d_sae, generator=gen))
    return sae


def set_weights(sae: TrainableSAE[Any], W_enc, W_dec=None, b_enc=None, b_dec=None) -> None:
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(W_enc, dtype=sae.dtype))
        if W_dec is not None:
            sae.W_dec.copy_(torch.as_tensor(W_dec, dtype=sae.dtype))
        sae.b_enc.copy_(torch.as_tensor(b_enc if b_enc is not None else 0.0, dtype=sae.dtype))
        sae.b_dec.copy_(torch.as_tensor(b_dec if b_dec is not None else 0.0, dtype=sae.dtype))


def sparse_data(n: int, *, d_in: int = 8, n_true: int = 16, active: int = 2, seed: int = 0) -> torch.Tensor:
    """x = sparse non-negative codes @ a random unit-norm dictionary."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n_true, d_in, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, n_true, generator=gen).argsort(1)[:, :active]
    codes = torch.zeros(n, n_true).scatter_(1, chosen, 0.5 + 2 * torch.rand(n, active, generator=gen))
    return codes @ dictionary


def run_kernel(sae: TrainableSAE[Any], x: Tensor, kernel: Literal["fast", "reference"]) -> StepResult:
    """One forward and backward of a copy of ``sae`` with ``kernel``: (output, parameter
    gradients, input gradient). An arbitrary upstream gradient on x_hat joins the loss's."""
    sae = copy.deepcopy(sae)
    x = x.clone().requires_grad_(True)
    out = sae.forward_train(x, kernel=kernel)
    (out.loss + 0.1 * out.x_hat.sum()).backward()
    grads = {name: p.grad for name, p in sae.named_parameters() if p.grad is not None}
    assert x.grad is not None
    return out, grads, x.grad


def assert_same_step(fast: StepResult, ref: StepResult, loss_parts: set[str]) -> None:
    """Two ``run_kernel`` results agree: outputs, losses, metrics and every gradient."""
    (fast_out, fast_grads, fast_xgrad), (ref_out, ref_grads, ref_xgrad) = fast, ref
    _assert_same_output(fast_out, ref_out, loss_parts)
    assert set(fast_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(fast_xgrad, ref_xgrad)


def _assert_same_output(fast: TrainStepOutput, ref: TrainStepOutput, loss_parts: set[str]) -> None:
    torch.testing.assert_close(fast.x_hat, ref.x_hat)
    torch.testing.assert_close(fast.feats, ref.feats)
    assert set(fast.losses) == set(ref.losses) == loss_parts
    for name in loss_parts:
        torch.testing.assert_close(fast.losses[name], ref.losses[name])
    torch.testing.assert_close(fast.loss, ref.loss)
    torch.testing.assert_close(fast.l0, ref.l0)
    torch.testing.assert_close(fast.explained_variance, ref.explained_variance)
    assert torch.equal(fast.fire_counts, ref.fire_counts)


def assert_bfloat16_kernels_agree(sae: TrainableSAE[Any]) -> None:
    """The fast and reference kernels of a bf16-compute SAE pick the same latents and agree on
    outputs and gradients within bf16's precision (the fast backward is exact fp32; the
    reference's is bf16). Five latents are marked dead so the AuxK path runs too."""
    sae.eval()
    sae.tokens_since_fired[:5] = 1
    x = torch.randn(64, 8)
    fast, fast_grads, _ = run_kernel(sae, x, "fast")
    ref, ref_grads, _ = run_kernel(sae, x, "reference")
    torch.testing.assert_close(fast.feats, ref.feats)  # same bf16 pre-activations, same choice
    torch.testing.assert_close(fast.x_hat, ref.x_hat, rtol=2e-2, atol=2e-2)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=5e-2, atol=5e-2 * grad.abs().max().item())


def train_steps(cfg: TrainConfig, x: torch.Tensor) -> tuple[TrainableSAE[Any], list[TrainStepOutput]]:
    """Adam steps over ``x`` in batches of ``cfg.batch_size``, b_dec started at the median."""
    sae = make_sae(cfg)
    sae.init_b_dec(x[:512])
    opt = make_optimizer(sae)
    sched = make_scheduler(opt, cfg)
    outs = [train_step(sae, opt, batch, sched) for batch in x.split(cfg.batch_size)]
    return sae, outs
