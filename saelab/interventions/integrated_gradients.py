"""Integrated gradients along each hook's path, refined per row until the hook's effect adds up.

The path (Marks et al. 2024): at one hook, every position but BOS becomes ``decode(alpha f) +
alpha e`` while the other hooks stay clean; ``alpha = 0`` is the baseline ``decode(0)`` and
``alpha = 1`` the clean pass. A node's attribution is its value times its gradient integrated
over ``alpha``. The node gradients at one ``alpha`` add up to ``d metric / d alpha``, so the
attributions of all of a hook's nodes add up to ``metric(clean) - metric(baseline)`` up to the
quadrature's error (*completeness*), and that sum is checked against the real patched metric,
which costs one forward pass per hook.

Why refine. On SmolLM2 the metric along the path has bends a few hundredths of ``alpha``
wide (between 0.2 and 0.5 at blocks.15, and within the first 2% where a massive activation
after BOS is restored). At 10 steps on the 24 prompts of ``bench/attribution.py`` at blocks.15,
no fixed rule tried was complete: the worst prompt missed by 59% (uniform midpoints), 117%
(``t**2``), 227% (``t**3``), 238% (Gauss-Legendre) and 232% (cosine spacing), with 14-21
prompts over 5%. So each row whose sum misses the real change by more than
``max(rtol * |change|, atol)`` is recomputed with twice the steps, up to ``max_steps``; a row
still missing then is reported (``complete`` False) and warned about, never hidden.
"""

from __future__ import annotations

import warnings

import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations
from saelab.interventions import _gradients as G
from saelab.interventions.metrics import Metric, evaluate, per_row

COMPLETENESS_COLUMNS = ["row", "hook", "steps", "clean", "ig_sum", "patched_change", "abs_error", "complete"]


def path_schedule(steps: int) -> tuple[Float[Tensor, " steps"], Float[Tensor, " steps"]]:
    """``steps`` points ``alpha`` in (0, 1) and their quadrature weights (summing to 1).

    The midpoint rule in ``t`` with ``alpha = t**2`` (weights ``2 t / steps``): the points
    crowd towards ``alpha = 0``, where restoring a massive activation bends the path within
    its first few percent; elsewhere they are as dense as uniform midpoints.
    """
    t = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    return t**2, 2 * t / steps


def integrated_gradient_nodes(
    model: HookedTransformer,
    saes: dict[str, SAE],
    tokens: Int[Tensor, "rows pos"],
    metric: Metric,
    steps: int,
    batch_tokens: int,
    *,
    max_steps: int,
    rtol: float,
    atol: float,
) -> tuple[float, dict[str, G.NodeGrads], pd.DataFrame]:
    """The clean metric; per hook the node values and their path-integrated gradients; and the
    completeness check, one row per (row, hook) (:data:`COMPLETENESS_COLUMNS`)."""
    hooks = list(saes)
    clean = G.clean_activations(model, hooks, tokens)
    with torch.no_grad():
        clean_rows = per_row(metric, G.forward_from(model, hooks[0], tokens, clean[hooks[0]]), tokens)
    out, checks = {}, []
    for hook, sae in saes.items():
        x = clean[hook]
        feats = encode_activations(sae, x).detach()
        error = (x - sae.decode(feats).to(device=x.device, dtype=x.dtype)).detach()
        change = clean_rows - _baseline_metric(model, hook, sae, tokens, x, metric)
        row_steps = torch.full((tokens.shape[0],), steps)
        g_f, g_e = _path_gradients(model, hook, sae, tokens, x, metric, row_steps, batch_tokens)
        while True:
            total = _node_sum(feats, g_f) + _node_sum(error, g_e)
            missing = (total - change).abs() > torch.clamp(rtol * change.abs(), min=atol)
            redo = torch.nonzero(missing & (row_steps * 2 <= max_steps)).flatten()
            if len(redo) == 0:
                break
            row_steps[redo] *= 2
            on = redo.to(x.device)
            g_f[on], g_e[on] = _path_gradients(model, hook, sae, tokens[redo], x[on], metric, row_steps[redo],
                                               batch_tokens)  # fmt: skip
        out[hook] = G.NodeGrads(feats, g_f, error, g_e)
        checks.append(pd.DataFrame({
            "row": range(tokens.shape[0]), "hook": hook, "steps": row_steps.numpy(), "clean": clean_rows.numpy(),
            "ig_sum": total.numpy(), "patched_change": change.numpy(), "abs_error": (total - change).abs().numpy(),
            "complete": (~missing).numpy(),
        }))  # fmt: skip
    completeness = pd.concat(checks, ignore_index=True).loc[:, COMPLETENESS_COLUMNS]
    _warn_incomplete(completeness, max_steps)
    return float(clean_rows.sum()), out, completeness


def _baseline_metric(
    model: HookedTransformer, hook: str, sae: SAE, tokens: Tensor, x: Tensor, metric: Metric
) -> Float[Tensor, " rows"]:
    """Per row, the metric with ``hook`` at the path's start (IG's own hook at ``alpha = 0``)."""
    baseline = G.scaled_leaf_hook(sae, torch.zeros(tokens.shape[0]), {}, hook)
    with torch.no_grad():
        return per_row(metric, G.forward_from(model, hook, tokens, x, [(hook, baseline)]), tokens)


def _path_gradients(
    model: HookedTransformer,
    hook: str,
    sae: SAE,
    tokens: Int[Tensor, "rows pos"],
    x: Float[Tensor, "rows pos d"],
    metric: Metric,
    row_steps: Int[Tensor, " rows"],
    batch_tokens: int,
) -> tuple[Float[Tensor, "rows pos d_sae"], Float[Tensor, "rows pos d"]]:
    """Each row's node gradients, weighted over its own ``path_schedule(row_steps[row])``."""
    alphas, weights, sources = [], [], []
    for row, n in enumerate(row_steps.tolist()):
        a, w = path_schedule(n)
        alphas.append(a)
        weights.append(w)
        sources.append(torch.full((n,), row))
    row_alpha, row_weight, row_source = torch.cat(alphas), torch.cat(weights), torch.cat(sources)
    chunk = max(1, batch_tokens // tokens.shape[1])
    sum_f = torch.zeros(*x.shape[:2], int(sae.cfg.d_sae), device=x.device)
    sum_e = torch.zeros_like(x)
    for begin in range(0, len(row_alpha), chunk):
        part = slice(begin, begin + chunk)
        src = row_source[part]
        store: dict[str, G.Leaves] = {}
        with torch.enable_grad():
            hook_fn = G.scaled_leaf_hook(sae, row_alpha[part], store, hook)
            logits = G.forward_from(model, hook, tokens[src], x[src.to(x.device)], [(hook, hook_fn)])
            ((g_f, g_e),) = G.gradients(evaluate(metric, logits, tokens[src]), [store[hook]])
        w = row_weight[part].to(x.device)[:, None, None]
        sum_f.index_add_(0, src.to(sum_f.device), g_f * w.to(g_f.device, g_f.dtype))
        sum_e.index_add_(0, src.to(sum_e.device), g_e * w.to(g_e.device, g_e.dtype))
    return sum_f, sum_e


def _node_sum(values: Tensor, grads: Tensor) -> Float[Tensor, " rows"]:
    """Per row, the attributions ``values * grads`` of every node but BOS's, summed."""
    return (values * grads)[:, 1:].sum(dim=(1, 2)).detach().float().cpu()


def _warn_incomplete(completeness: pd.DataFrame, max_steps: int) -> None:
    missed = completeness.loc[~completeness["complete"]]
    if len(missed):
        worst = missed.loc[missed["abs_error"].idxmax()]
        warnings.warn(
            f"integrated gradients: {len(missed)} (row, hook) pairs still miss completeness at {max_steps} steps, "
            f"worst row {worst['row']} at {worst['hook']}: sum {worst['ig_sum']:.4g} against a patched change of "
            f"{worst['patched_change']:.4g}; see Attribution.completeness, or raise max_steps",
            stacklevel=4,  # the caller of attribute()
        )
