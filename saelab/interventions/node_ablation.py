"""True single-node ablation effects, the quantity attribution estimates, for many prompts at once.

A node is a feature at one position of one prompt, or the error node there (feature -1). Its
effect is ``metric(clean) - metric(node removed)``: a feature is zeroed through the
error-preserving splice at its position only, ``x'[p] = x[p] + decode(f[p] with f[p, i] = 0) -
decode(f[p])``; the error node is removed, ``x'[p] = decode(f[p])``. Each node is one edited row
of the ablation engine (:mod:`saelab.forward.edited_rows`): the model runs to the hook once per
prompt, and rows of different prompts share the passes after it.

Padding. Prompts of different lengths come as one padded ``[n, pos]`` tensor with an attention
mask (right padding; a contiguous block of real tokens per row in any case). The metric reads
each row cut to its prompt's real tokens, ``logits[r, start:start + length]`` with the tokens
alike, so its positions (negative ones too: ``-1`` is the prompt's last token) mean what they
mean in a one-prompt call, and node positions count from the prompt's own BOS. Under right
padding the real positions never see a pad (the model is causal), so a padded prompt's effects
equal its unpadded ones up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.extract.hooks import encode_activations, run_hooks
from saelab.forward.edited_rows import (
    DEFAULT_MAX_LOGIT_BYTES,
    EditedChunk,
    HookActs,
    Reduce,
    rows_per_pass,
    run_edited_rows,
)
from saelab.interventions import _gradients as G
from saelab.interventions.ablation import as_token_batch
from saelab.interventions.edits import check_features
from saelab.interventions.metrics import Metric, evaluate
from saelab.interventions.splice import splice_delta
from saelab.saes import sae_hook_name

_LOGIT_BLOCKS = 2  # a chunk's logits and one temporary of a row's metric


class Prompts(NamedTuple):
    """Padded prompts and where each one's real tokens are."""

    tokens: Int[Tensor, "n pos"]
    attention_mask: Int[Tensor, "n pos"] | None
    """None when no row is padded."""
    start: Int[Tensor, " n"]
    """Column of each prompt's first real token (its BOS)."""
    length: Int[Tensor, " n"]
    """Real tokens of each prompt."""


def ablation_effects(
    model: HookedTransformer,
    sae: SAE,
    tokens: Int[Tensor, "n pos"] | Int[Tensor, " pos"] | str | Sequence[str],
    metric: Metric,
    nodes: pd.DataFrame | Sequence[tuple[int, int]] | Sequence[tuple[int, int, int]],
    *,
    attention_mask: Int[Tensor, "n pos"] | None = None,
    batch_size: int = 16,
) -> Float[np.ndarray, " nodes"]:
    """True effects ``metric(clean) - metric(node removed)`` of single nodes, one per row of ``nodes``.

    ``tokens``: ``[n, pos]`` ids of ``n`` prompts with BOS first (``attention_mask`` when padded,
    see the module docstring), one prompt's ``[pos]`` ids, a text, or a list of texts (tokenized
    with BOS and right-padded). ``nodes``: a frame with ``position`` and ``feature`` columns and
    a ``prompt`` column (row of ``tokens``; optional when there is one prompt), or
    ``(position, feature)`` / ``(prompt, position, feature)`` tuples. Feature -1 is the error node;
    positions count from the prompt's BOS, negative ones from its end. At most ``batch_size``
    edited rows, of any prompts, share a pass.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    hook = sae_hook_name(sae)
    G.sae_dict(model, sae)  # checks the SAE against the model
    prompts = _prompts(model, tokens, attention_mask)
    prompt, position, feature = _node_table(nodes, prompts, sae.cfg.d_sae)
    x = run_hooks(model, [hook], prompts.tokens, prompts.attention_mask)[hook]
    clean_acts = HookActs(hook, x, prompts.tokens, prompts.attention_mask)
    n_prompts, width = prompts.tokens.shape
    rows = min(batch_size, rows_per_pass(DEFAULT_MAX_LOGIT_BYTES, width, model.cfg.d_vocab, _LOGIT_BLOCKS))
    clean = torch.zeros(n_prompts, dtype=torch.float64)
    run_edited_rows(model, clean_acts, torch.arange(n_prompts), _scores(metric, prompts, clean), rows_per_chunk=rows)
    column = prompts.start[prompt] + position
    vectors = _node_deltas(sae, x[prompt.to(x.device), column.to(x.device)], feature)
    order = torch.argsort(prompt, stable=True)  # rows of one prompt together: chunks stay narrow

    def deltas(chunk_rows: Tensor) -> Tensor:
        node = order[chunk_rows]
        out = torch.zeros(len(node), *x.shape[1:], device=x.device, dtype=x.dtype)
        out[torch.arange(len(node), device=x.device), column[node].to(x.device)] = vectors[node.to(x.device)]
        return out

    ablated = torch.zeros(len(prompt), dtype=torch.float64)
    run_edited_rows(model, clean_acts, prompt[order], _scores(metric, prompts, ablated, order), rows_per_chunk=rows,
                    deltas=deltas)  # fmt: skip
    return (clean[prompt] - ablated).numpy()


def _scores(metric: Metric, prompts: Prompts, into: Tensor, order: Tensor | None = None) -> Reduce:
    """A reduction that writes the metric of each edited row, read on its prompt's real tokens,
    to ``into`` (at ``order[row]`` when the rows were reordered)."""

    def reduce(chunk: EditedChunk) -> None:
        index = chunk.rows if order is None else order[chunk.rows]
        for r, (p, i) in enumerate(zip(chunk.texts.tolist(), index.tolist(), strict=True)):
            s, n = int(prompts.start[p]), int(prompts.length[p])
            value = evaluate(metric, chunk.logits[r : r + 1, s : s + n], chunk.tokens[r : r + 1, s : s + n])
            into[i] = float(value.detach())

    return reduce


def _prompts(model: HookedTransformer, tokens: Tensor | str | Sequence[str], attention_mask: Tensor | None) -> Prompts:
    """The prompts on the model's device, checked, with each one's real span."""
    if not isinstance(tokens, (Tensor, str)):
        batch = as_token_batch(model, tokens)
        tokens, attention_mask = batch.tokens.to(model.cfg.device), batch.attention_mask
    else:
        tokens = G.as_tokens(model, tokens)
    if attention_mask is None or bool(attention_mask.bool().all()):
        n, width = tokens.shape
        return Prompts(tokens, None, torch.zeros(n, dtype=torch.long), torch.full((n,), width))
    if attention_mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match tokens {tuple(tokens.shape)}"
        )
    real = attention_mask.bool().cpu()
    start, length = real.to(torch.int8).argmax(dim=1), real.sum(dim=1)
    columns = torch.arange(real.shape[1])
    span = (columns >= start[:, None]) & (columns < (start + length)[:, None])
    if bool((span != real).any()) or bool((length < 2).any()):
        raise ValueError("each prompt's real tokens must be one block of at least two (BOS and one more)")
    return Prompts(tokens, attention_mask.long(), start, length)


def _node_table(
    nodes: pd.DataFrame | Sequence[tuple[int, ...]], prompts: Prompts, d_sae: int
) -> tuple[Int[Tensor, " nodes"], Int[Tensor, " nodes"], Int[Tensor, " nodes"]]:
    """``(prompt, position, feature)`` of each node, positions made non-negative; checked."""
    n_prompts = prompts.tokens.shape[0]
    if isinstance(nodes, pd.DataFrame):
        cols = ["prompt", "position", "feature"] if "prompt" in nodes.columns else ["position", "feature"]
        table = nodes.loc[:, cols].to_numpy(dtype=np.int64).reshape(-1, len(cols))
    else:
        table = np.asarray([tuple(node) for node in nodes], dtype=np.int64).reshape(len(nodes), -1 if nodes else 2)
    if table.shape[1] == 2:
        if n_prompts > 1 and len(table):
            raise ValueError(f"{n_prompts} prompts: say each node's prompt (a 'prompt' column, or 3-tuples)")
        table = np.concatenate([np.zeros((len(table), 1), dtype=np.int64), table], axis=1)
    elif table.shape[1] != 3:
        raise ValueError("nodes are (position, feature) or (prompt, position, feature)")
    prompt, position, feature = (torch.from_numpy(table[:, k].copy()) for k in range(3))
    if len(prompt) and not bool(((prompt >= 0) & (prompt < n_prompts)).all()):
        raise ValueError(f"a node's prompt is out of range: there are {n_prompts} prompts")
    length = prompts.length[prompt]
    if not bool(((position >= -length) & (position < length)).all()):
        raise ValueError("a node's position is outside its prompt")
    position = position % length
    if bool((position == 0).any()):
        raise ValueError("position 0 is BOS, which is never ablated")
    check_features([int(f) for f in feature if f != -1] or [0], d_sae)
    return prompt, position, feature


def _node_deltas(
    sae: SAE, x: Float[Tensor, " nodes *d"], features: Int[Tensor, " nodes"]
) -> Float[Tensor, " nodes *d"]:
    """Per node, the change to its position's activation that removes it."""
    rows = torch.arange(len(features))
    keep = features >= 0

    def zero_each(feats: Tensor) -> Tensor:  # [nodes, 1, d_sae]: node n zeroes its own feature
        out = feats.clone()
        out[rows[keep], 0, features[keep].to(feats.device)] = 0
        return out

    with torch.inference_mode():
        delta = splice_delta(sae, x[:, None], zero_each)[:, 0]
        error = x - sae.decode(encode_activations(sae, x)).to(device=x.device, dtype=x.dtype)
        is_error = (~keep).to(x.device).reshape(-1, *([1] * (x.ndim - 1)))
        return torch.where(is_error, -error, delta)
