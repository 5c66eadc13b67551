"""Planted lineages with known events, shared by the lineage tests and the lineage figures' tests.

Decoders are rows of one orthonormal basis (so every unplanted cosine is exactly 0), with
the structure written out below; activations are hand-made sparse token matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from saelab.extract import PerTokenFeatures

HOOKS = ("blocks.4.hook_resid_pre", "blocks.8.hook_resid_pre", "blocks.12.hook_resid_pre")
D_IN = 256
N_PERSIST = 100
BORN = (146, 147, 148)
"""Features of hook 1 that nothing at hook 0 leads to."""


def planted_decoders() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Three decoders and the answer key.

    hook 0 (105 features): 0..99 persist (basis 0..99), 100 splits (basis 100), 101 and 102
    merge (basis 102, 103), 103 and 104 die (basis 104, 105).
    hook 1 (106 features): 0..99 persist, 100 and 101 are the split's children
    (cos 40° s ± sin 40° w, w = basis 101), 102 is the merge ((m1 + m2) / √2), 103..105 are
    born (basis 106..108).
    hook 2: hook 1's features in a fixed random order (``perm[j]`` = hook 2's id of hook 1's j).
    """
    q, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    basis = q.T.float()  # rows are orthonormal
    theta = np.deg2rad(40.0)
    s, w = basis[100], basis[101]
    h0 = torch.cat([basis[:N_PERSIST], basis[[100, 102, 103, 104, 105]]])
    children = torch.stack([np.cos(theta) * s + np.sin(theta) * w, np.cos(theta) * s - np.sin(theta) * w])
    merged = ((basis[102] + basis[103]) / 2**0.5)[None]
    h1 = torch.cat([basis[:N_PERSIST], children, merged, basis[106:109]])
    perm = torch.randperm(len(h1), generator=torch.Generator().manual_seed(1))
    h2 = torch.empty_like(h1)
    h2[perm] = h1
    key = {"perm": perm.numpy(), "split": 100, "children": (100, 101), "merge": (101, 102), "merged": 102,
           "dead": (103, 104), "born": (103, 104, 105)}  # fmt: skip
    return dict(zip(HOOKS, (h0, h1, h2), strict=True)), key


def per_token_from_dense(dense: np.ndarray, tokens_per_text: int = 50) -> PerTokenFeatures:
    """A PerTokenFeatures of ``dense`` [n_tokens, d_sae], cut into texts of ``tokens_per_text``."""
    x = torch.as_tensor(dense, dtype=torch.float32)
    n_tokens = x.shape[0]
    rows, cols = x.nonzero(as_tuple=True)
    starts = list(range(0, n_tokens, tokens_per_text)) + [n_tokens]
    n_texts = len(starts) - 1
    return PerTokenFeatures(
        tokens=[[f"t{i}" for i in range(a, b)] for a, b in zip(starts[:-1], starts[1:], strict=True)],
        token_ids=[list(range(a, b)) for a, b in zip(starts[:-1], starts[1:], strict=True)],
        d_sae=x.shape[1],
        row_ptr=torch.cat(
            [torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(rows, minlength=n_tokens), 0)]
        ),
        feature_idx=cols,
        values=x[rows, cols],
        text_row_start=torch.tensor(starts[: n_texts + 1]),
    )


def planted_activations(n_tokens: int = 3000, seed: int = 0) -> tuple[dict[str, PerTokenFeatures], dict[str, Any]]:
    """Two hooks of 30 features on the same tokens.

    hook 1's feature ``perm[i]`` is hook 0's feature i (i < 25, rescaled: correlation 1);
    hook 0's 25..29 die (nothing at hook 1 correlates with them); hook 1's remaining 5 ids
    are fresh features (born).
    """
    rng = np.random.default_rng(seed)
    n = 30
    h0 = (rng.random((n_tokens, n)) < 0.08) * rng.exponential(1.0, (n_tokens, n))
    fresh = (rng.random((n_tokens, 5)) < 0.08) * rng.exponential(1.0, (n_tokens, 5))
    perm = rng.permutation(n)
    h1 = np.zeros_like(h0)
    h1[:, perm[:25]] = 2.0 * h0[:, :25]
    h1[:, perm[25:]] = fresh
    key = {"perm": perm, "dead": tuple(range(25, 30)), "born": tuple(int(p) for p in perm[25:])}
    return {HOOKS[0]: per_token_from_dense(h0), HOOKS[1]: per_token_from_dense(h1)}, key
