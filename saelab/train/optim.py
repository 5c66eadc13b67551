"""Adam, the learning-rate schedule (linear warm-up, constant, linear decay to 0) and one step.

The full training loop (data, logging, checkpoints) lives elsewhere; these are the pieces
it and the tests share.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from saelab.train.base import TrainableSAE, TrainStepOutput
from saelab.train.config import TrainConfig


def lr_lambda(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``step`` (0-based).

    Rises linearly to 1 over ``lr_warmup_steps`` (starting at 1/warmup, not 0, so the first
    step is not wasted), stays at 1, then falls linearly to 0 over the final
    ``lr_decay_steps`` steps: the last step uses 1/decay, a step past the end 0.
    """
    factor = 1.0
    if cfg.lr_warmup_steps > 0:
        factor = min(factor, (step + 1) / cfg.lr_warmup_steps)
    if cfg.lr_decay_steps > 0:
        factor = min(factor, max(cfg.total_steps - step, 0) / cfg.lr_decay_steps)
    elif step >= cfg.total_steps:
        factor = 0.0
    return factor


def make_optimizer(sae: TrainableSAE[Any], cfg: TrainConfig | None = None) -> torch.optim.Adam:
    """Adam over the SAE's parameters, fused where torch has a fused kernel.

    The fused kernel matters on CPU, where the default multi-tensor version would take a
    sizeable share of a TopK step (``bench/README.md`` gives the measurement).
    """
    config: TrainConfig = cfg if cfg is not None else sae.cfg
    lr, betas, eps = config.lr, config.adam_betas, config.adam_eps
    try:
        return torch.optim.Adam(sae.parameters(), lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(sae.parameters(), lr=lr, betas=betas, eps=eps)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_lambda(step, cfg))


def train_step(
    sae: TrainableSAE[Any],
    optimizer: torch.optim.Optimizer,
    batch: Float[Tensor, "batch d_in"],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> TrainStepOutput:
    """One optimisation step: forward, backward, Adam, the SAE's constraints, the schedule.
    Under data parallelism (``sae.replicas``) the gradients are averaged over the replicas
    before clipping and Adam, so every copy takes the same step."""
    sae.train()
    optimizer.zero_grad(set_to_none=True)
    out = sae.forward_train(batch)
    out.loss.backward()
    if sae.replicas is not None:
        # Each replica's loss is the mean over its equal share of the global batch, so the
        # mean of their gradients is the global batch's gradient.
        sae.replicas.average_gradients([p for p in sae.parameters() if p.requires_grad])
    if sae.cfg.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), sae.cfg.grad_clip_norm)
    optimizer.step()
    sae.post_step()
    if scheduler is not None:
        scheduler.step()
    return out
