"""Each attribution method judged against the quantity it estimates.

Integrated gradients along Marks et al.'s whole-hook path splits the *joint* effect of
patching the whole hook to its baseline, ``x = decode(0)`` at every position but BOS (the
path's end, ``_gradients.scaled_leaf_hook`` at alpha = 0), among the hook's nodes. So its
check is completeness (:func:`ig_completeness`): per prompt and hook, the sum of the hook's
IG attributions (features and error nodes, every position but BOS) against the metric change
that patch really causes.

A single node's ablation is another quantity. :func:`node_path_ig` integrates along that
node's own path alone, ``x + s * delta`` for ``s`` from 0 (clean) to 1 (node removed), where
``delta`` is the ablation's change at the node's position (through the error-preserving
splice); its completeness is that node's ablation effect by construction. Each node needs
``steps`` forward and backward passes of its own, so it costs more than the one forward pass
of the ablation it estimates: on SmolLM2 at blocks.20, one step reached r = 0.997-0.999 with
the true ablations at 1.4-1.8x their cost, so it is not exported (``bench/attribution.py``).

Measured completeness (``bench/attribution.py``, 24 prompts, the suite's four hooks): at a
fixed 10 steps IG misses 5% on 14 of 24 prompts at blocks.15, where the metric along the path
has bends a few hundredths of ``alpha`` wide; blocks.25 and 28 are within 5%. The refinement
of :func:`~saelab.interventions.attribute` (rows redone at 20 and 40 steps) brings every prompt
within tolerance. An SAE whose ``decode(0)`` is near 0 sends the path through every RMSNorm's
singularity at x = 0, where no number of steps is complete; trained SAEs' ``b_dec`` (the mean
activation) keeps the baseline an ordinary residual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations
from saelab.interventions import _gradients as G
from saelab.interventions.attribution import attribute
from saelab.interventions.attribution_check import Prompts, RowMetric, length_batches, prompt_list
from saelab.interventions.edits import check_features
from saelab.interventions.metrics import Metric
from saelab.interventions.splice import splice_delta
from saelab.saes import sae_hook_name

COMPLETENESS_COLUMNS = [
    "prompt", "hook", "steps", "clean", "ig_sum", "patched_change", "abs_error", "relative_error", "complete",
]  # fmt: skip


def ig_completeness(
    model: HookedTransformer,
    saes: SAE | Mapping[str, SAE] | Sequence[SAE],
    prompts: Prompts,
    metric_for: Callable[[Tensor], Metric],
    *,
    steps: int = 10,
    max_steps: int | None = None,
    rtol: float = 0.05,
    atol: float = 0.005,
    batch_tokens: int = 2048,
) -> pd.DataFrame:
    """Per prompt and hook: the steps used, the metric on the clean pass, the sum of the hook's
    integrated gradients attributions, the true change ``patched_change = metric(clean) -
    metric(hook patched to decode(0) but at BOS)``, ``abs_error``, ``relative_error =
    abs_error / |patched_change|`` (read the absolute error where the change itself is near 0)
    and ``complete`` (within ``max(rtol * |change|, atol)``).

    ``steps``, ``max_steps``, ``rtol`` and ``atol`` as in
    :func:`~saelab.interventions.attribute` (``max_steps=steps``: the fixed quadrature alone).
    Prompts and ``metric_for`` as in :func:`~saelab.interventions.attribution_vs_ablation`.
    Columns: :data:`COMPLETENESS_COLUMNS`.
    """
    by_hook = G.sae_dict(model, saes)
    rows = prompt_list(model, prompts)
    row_metric = RowMetric.build(rows, metric_for)
    parts = []
    for idx in length_batches(rows, batch_tokens):
        tokens = torch.stack([rows[i] for i in idx])
        result = attribute(model, by_hook, tokens, row_metric, method="integrated_gradients", steps=steps,
                           max_steps=max_steps, rtol=rtol, atol=atol, batch_tokens=batch_tokens)  # fmt: skip
        assert result.completeness is not None
        parts.append(result.completeness.assign(prompt=[idx[r] for r in result.completeness["row"]]))
    out = pd.concat(parts, ignore_index=True).sort_values(["prompt", "hook"], kind="stable").reset_index(drop=True)
    out["relative_error"] = out["abs_error"] / out["patched_change"].abs()
    return out.loc[:, COMPLETENESS_COLUMNS]


def node_path_ig(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "1 pos"],
    metric: Metric,
    nodes: pd.DataFrame | Sequence[tuple[int, int]],
    *,
    steps: int = 4,
    batch_size: int = 64,
) -> np.ndarray:
    """Per node, integrated gradients along that node's own ablation path (midpoint rule,
    ``steps`` points): an estimate of ``metric(clean) - metric(node removed)``.

    ``nodes`` are ``(position, feature)`` pairs (feature -1: the error node), as for
    ``ablation_effects``; ``batch_size`` bounds the rows (node x step) of one pass.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    G.sae_dict(model, sae)  # checks the SAE against the model
    hook = sae_hook_name(sae)
    tokens = G.as_tokens(model, tokens)
    if tokens.shape[0] != 1:
        raise ValueError(f"node_path_ig takes one prompt (one row of tokens), got {tokens.shape[0]} rows")
    pairs = nodes.loc[:, ["position", "feature"]].to_numpy() if isinstance(nodes, pd.DataFrame) else list(nodes)
    positions = [int(p) % tokens.shape[1] for p, _ in pairs]
    if any(p == 0 for p in positions):
        raise ValueError("position 0 is BOS, which is never ablated")
    features = [int(f) for _, f in pairs]
    check_features([f for f in features if f != -1] or [0], sae.cfg.d_sae)
    x = G.clean_activations(model, [hook], tokens)[hook]
    deltas = removal_deltas(sae, x[0], positions, features)
    s_values = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    row_node = torch.arange(len(pairs), device=x.device).repeat_interleave(steps)
    row_s = s_values.repeat(len(pairs))
    slopes = torch.zeros(len(row_node), device=x.device)
    for begin in range(0, len(row_node), batch_size):
        node, s = row_node[begin : begin + batch_size], row_s[begin : begin + batch_size].clone().requires_grad_()
        n = len(node)
        with torch.enable_grad():
            moved = x.expand(n, -1, -1) + s[:, None, None] * deltas[node]  # x + s * delta, one row per (node, s)
            logits = G.forward_from(model, hook, tokens.expand(n, -1), moved)
            (slope,) = torch.autograd.grad(metric(logits, tokens.expand(n, -1)), [s])
        slopes[begin : begin + n] = slope.detach()
    # effect = metric(s=0) - metric(s=1) = -(integral of d metric / d s over [0, 1])
    return (-slopes.reshape(len(pairs), steps).mean(dim=1)).cpu().numpy()


def removal_deltas(
    sae: SAE, x: Float[Tensor, "pos d_in"], positions: list[int], features: list[int]
) -> Float[Tensor, "nodes pos d_in"]:
    """Per node, the change to the activation that removes it, zero but at its position: a
    feature zeroed through the error-preserving splice, or the error node taken out."""
    pos = torch.tensor(positions, device=x.device)
    feature = torch.tensor(features)
    keep = feature >= 0

    def zero_each(feats: Tensor) -> Tensor:  # feats [nodes, 1, d_sae]: node n zeroes its own feature
        out = feats.clone()
        out[torch.arange(len(features))[keep], 0, feature[keep].to(feats.device)] = 0
        return out

    with torch.no_grad():
        delta = splice_delta(sae, x[pos][:, None], zero_each)[:, 0]
        error = x[pos] - sae.decode(encode_activations(sae, x[pos])).to(device=x.device, dtype=x.dtype)
        delta = torch.where((~keep).to(x.device)[:, None], -error, delta)
    out = torch.zeros(len(positions), *x.shape, device=x.device, dtype=x.dtype)
    out[torch.arange(len(positions), device=x.device), pos] = delta
    return out
