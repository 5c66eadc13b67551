"""The parts of a dashboard that need no text: each feature's direct logit effect (top
promoted and suppressed tokens, and its histogram over the vocabulary) and its nearest
features by decoder cosine. Computed for many features at once, in blocks, so a whole
4,608-feature SAE costs a few seconds (``W_dec @ W_U`` is 4,608 x 576 x 49,152 here).

Suffixes: ``S`` the dashboard's features, ``F`` all features, ``D`` the model's width,
``V`` the vocabulary, ``K`` kept entries.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.analysis.feature import unembedding_directions
from saelab.dashboards.data import Histogram, Neighbour, TokenValue
from saelab.extract.tokens import token_strings

_BLOCK = 256  # features per block: a [256, 49152] float32 block of logits is 48 MiB


class LogitParts(NamedTuple):
    promoted: list[tuple[TokenValue, ...]]
    suppressed: list[tuple[TokenValue, ...]]
    histograms: list[Histogram]


def logit_parts(model: HookedTransformer, sae: SAE, features: list[int], *, top: int, n_bins: int) -> LogitParts:
    """Per feature: the ``top`` tokens whose logits its direction raises and lowers most
    (logits per unit of activation, before the final norm's division) and the histogram of
    its effect over the whole vocabulary."""
    w_u = model.W_U.detach()
    ids_S = torch.tensor(features, dtype=torch.long)
    up_ids, up_vals, down_ids, down_vals, hists = [], [], [], [], []
    with torch.inference_mode():
        for block in ids_S.split(_BLOCK):
            logits = (unembedding_directions(model, sae, block) @ w_u).float().cpu()  # [block, V]
            k = min(top, logits.shape[1])
            up, down = logits.topk(k, dim=1), (-logits).topk(k, dim=1)
            up_ids.append(up.indices)
            up_vals.append(up.values)
            down_ids.append(down.indices)
            down_vals.append(-down.values)
            hists += _histograms(logits, n_bins)
    promoted = _token_tables(model, torch.cat(up_ids), torch.cat(up_vals))
    suppressed = _token_tables(model, torch.cat(down_ids), torch.cat(down_vals))
    return LogitParts(promoted, suppressed, hists)


def _histograms(values_SV: Float[Tensor, "S V"], n_bins: int) -> list[Histogram]:
    """Each row's histogram over ``n_bins`` equal bins from its minimum to its maximum."""
    low, high = values_SV.min(dim=1).values, values_SV.max(dim=1).values
    width = (high - low).clamp_min(1e-6)
    bins = ((values_SV - low[:, None]) / width[:, None] * n_bins).long().clamp(0, n_bins - 1)
    counts = torch.zeros((len(values_SV), n_bins), dtype=torch.long).scatter_add_(1, bins, torch.ones_like(bins))
    steps = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    edges = (low.double()[:, None] + width.double()[:, None] * steps).tolist()
    return [Histogram(tuple(e), tuple(c)) for e, c in zip(edges, counts.tolist(), strict=True)]


def _token_tables(model: HookedTransformer, ids_SK: Tensor, values_SK: Tensor) -> list[tuple[TokenValue, ...]]:
    """Token strings decoded once per distinct id (the same tokens recur across features)."""
    distinct = sorted(set(ids_SK.flatten().tolist()))
    names = dict(zip(distinct, token_strings(model, distinct, contiguous=False), strict=True))
    return [
        tuple(TokenValue(names[i], i, round(float(v), 5)) for i, v in zip(row_ids, row_vals, strict=True))
        for row_ids, row_vals in zip(ids_SK.tolist(), values_SK.tolist(), strict=True)
    ]


def decoder_neighbours(sae: SAE, features: list[int], n: int) -> list[tuple[Neighbour, ...]]:
    """The ``n`` features whose decoder directions have the highest cosine with each feature's
    (signed: a feature pointing the opposite way is no neighbour)."""
    w = sae.W_dec.detach().float().cpu()
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    ids_S = torch.tensor(features, dtype=torch.long)
    k = min(n, unit.shape[0] - 1)
    out: list[tuple[Neighbour, ...]] = []
    for block in ids_S.split(_BLOCK * 4):
        cos = unit[block] @ unit.T  # [block, F]
        cos[torch.arange(len(block)), block] = -2.0  # never one's own neighbour
        top = cos.topk(k, dim=1)
        out += [tuple(Neighbour(int(f), round(float(c), 5)) for f, c in zip(ids, vals, strict=True))
                for ids, vals in zip(top.indices.tolist(), top.values.tolist(), strict=True)]  # fmt: skip
    return out
