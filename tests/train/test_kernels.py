"""Each sparse kernel against its plain dense reference, outputs and gradients (float64),
and the bookkeeping of (token, latent) pairs."""

from __future__ import annotations

import pytest
import torch

from saelab.train.kernels.dense import dense_relu_encode, dense_relu_encode_reference
from saelab.train.kernels.pairs import ActivePairs
from saelab.train.kernels.select import batch_top_indices, batch_top_indices_reference
from saelab.train.kernels.sparse import (
    decode_pairs,
    decode_pairs_reference,
    selected_pre_acts,
    selected_pre_acts_reference,
    sparse_decode,
)
from saelab.train.kernels.ste import rectangle

from ._helpers import DEVICES

B, D, F = 12, 6, 20
f64 = torch.float64


def _leaves(seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"x": (B, D), "b_dec": (D,), "W_enc": (D, F), "b_enc": (F,)}
    return {k: torch.randn(*s, generator=gen, dtype=f64).to(device).requires_grad_(True) for k, s in shapes.items()}


def _on(pairs: ActivePairs, device: str) -> ActivePairs:
    return pairs._replace(rows=pairs.rows.to(device), cols=pairs.cols.to(device), crow=pairs.crow.to(device))


def _grads(out: torch.Tensor, leaves: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=f64).to(out.device)
    grads = torch.autograd.grad(out, list(leaves.values()), upstream, allow_unused=True)
    pairs = zip(leaves.items(), grads, strict=True)
    return {name: g if g is not None else torch.zeros_like(v) for (name, v), g in pairs}


def _pair_sets() -> dict[str, ActivePairs]:
    gen = torch.Generator().manual_seed(5)
    mask = torch.rand(B, F, generator=gen) < 0.3
    mask[2] = False  # a token with no pair
    per_token = torch.rand(B, F, generator=gen).topk(4, dim=1).indices.sort(dim=1).values
    flat = torch.randperm(B * F, generator=gen)[:30]
    aux = torch.rand(B, F, generator=gen).topk(3, dim=1).indices.sort(dim=1).values
    return {
        "mask": ActivePairs.from_mask(mask),
        "per_token": ActivePairs.per_token(per_token, F),
        "flat": ActivePairs.from_flat(flat, B, F),
        "joined_general": ActivePairs.from_mask(mask).join(ActivePairs.per_token(aux, F)).pairs,
        "joined_per_token": ActivePairs.per_token(per_token, F).join(ActivePairs.per_token(aux, F)).pairs,
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", list(_pair_sets()))
def test_selected_pre_acts_matches_reference(kind, device):
    pairs = _on(_pair_sets()[kind], device)
    leaves = _leaves(device=device)
    with torch.no_grad():
        pre = (leaves["x"] - leaves["b_dec"]) @ leaves["W_enc"] + leaves["b_enc"]
    x, b_dec, W_enc, b_enc = leaves.values()
    fast = selected_pre_acts(x, b_dec, W_enc, b_enc, pre, pairs)
    ref = selected_pre_acts_reference(x, b_dec, W_enc, b_enc, pairs)
    torch.testing.assert_close(fast, ref)
    fast_grads, ref_grads = _grads(fast, leaves), _grads(ref, leaves)
    for name in leaves:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mask", "per_token", "flat"])  # the CSR patterns: latents ascend per token
def test_decode_pairs_matches_reference(kind, device):
    pairs = _on(_pair_sets()[kind], device)
    gen = torch.Generator().manual_seed(2)
    values = torch.randn(pairs.rows.shape[0], generator=gen, dtype=f64).to(device).requires_grad_(True)
    W_dec = torch.randn(F, D, generator=gen, dtype=f64).to(device).requires_grad_(True)
    leaves = {"values": values, "W_dec": W_dec}
    fast, ref = decode_pairs(values, W_dec, pairs), decode_pairs_reference(values, W_dec, pairs)
    torch.testing.assert_close(fast, ref)
    fast_grads, ref_grads = _grads(fast, leaves), _grads(ref, leaves)
    for name in leaves:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], msg=lambda m, n=name: f"{n}: {m}")


def test_sparse_decode_is_a_dense_matmul():
    gen = torch.Generator().manual_seed(3)
    idx = torch.rand(B, F, generator=gen).topk(5, dim=1).indices.sort(dim=1).values
    values, W_dec = torch.randn(B, 5, generator=gen, dtype=f64), torch.randn(F, D, generator=gen, dtype=f64)
    dense = torch.zeros(B, F, dtype=f64).scatter(1, idx, values)
    torch.testing.assert_close(sparse_decode(values, idx, W_dec), dense @ W_dec)


def test_dense_relu_encode_matches_reference():
    leaves = _leaves()
    with torch.no_grad():
        pre = (leaves["x"] - leaves["b_dec"]) @ leaves["W_enc"] + leaves["b_enc"]
    x, b_dec, W_enc, b_enc = leaves.values()
    fast = dense_relu_encode(x, b_dec, W_enc, b_enc, pre, f64)
    ref = dense_relu_encode_reference(x, b_dec, W_enc, b_enc)
    torch.testing.assert_close(fast, ref)
    fast_grads, ref_grads = _grads(fast, leaves), _grads(ref, leaves)
    for name in leaves:
        torch.testing.assert_close(fast_grads[name], ref_grads[name], msg=lambda m, n=name: f"{n}: {m}")


def _as_lists(pairs: ActivePairs) -> list[list[int]]:
    """Each token's latents, in the pairs' order."""
    return [pairs.cols[pairs.crow[b] : pairs.crow[b + 1]].tolist() for b in range(pairs.n_tokens)]


def test_pair_constructors_agree():
    gen = torch.Generator().manual_seed(4)
    mask = torch.rand(B, F, generator=gen) < 0.25
    from_mask = ActivePairs.from_mask(mask)
    from_flat = ActivePairs.from_flat(mask.reshape(-1).nonzero().squeeze(1).flip(0), B, F)  # any order in
    for a, b in zip(from_mask[:3], from_flat[:3], strict=True):
        assert torch.equal(a, b)
    assert _as_lists(from_mask) == [row.nonzero().squeeze(1).tolist() for row in mask]
    assert from_mask.counts.tolist() == mask.sum(1).tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("first_kind", ["mask", "per_token"])
def test_join_groups_by_token_and_remembers_where_each_pair_went(first_kind, device):
    first = _on(_pair_sets()[first_kind], device)
    aux_idx = torch.rand(B, F, generator=torch.Generator().manual_seed(6)).topk(3, dim=1).indices
    second = ActivePairs.per_token(aux_idx.to(device), F)
    joined = first.join(second)
    expected = [a + b for a, b in zip(_as_lists(first), _as_lists(second), strict=True)]
    assert _as_lists(joined.pairs) == expected
    assert torch.equal(joined.pairs.rows, torch.arange(B, device=device).repeat_interleave(joined.pairs.counts))
    for part, at in ((first, joined.at_first), (second, joined.at_second)):
        assert torch.equal(joined.pairs.rows[at], part.rows) and torch.equal(joined.pairs.cols[at], part.cols)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k, loud_rows", [(3, 0), (3, 2), (2, 64), (10, 0)])
def test_batch_top_indices_matches_reference(k, loud_rows, device):
    """The same entries (no ties in float64): per-token candidates alone (3, 0), tokens that
    need searching whole (3, 2), every token whole (2, 64), and k so large that every
    latent is a candidate (10, 0)."""
    pre = torch.randn(64, 40, generator=torch.Generator().manual_seed(k + loud_rows), dtype=f64).to(device)
    pre[:loud_rows] += 100  # each loud token holds all 40 of its latents in the batch's top
    fast, ref = batch_top_indices(pre, k), batch_top_indices_reference(pre, k)
    assert fast.shape == (k * 64,) and fast.unique().numel() == k * 64
    assert torch.equal(fast.sort().values, ref.sort().values)
    kept = torch.zeros(64 * 40, dtype=torch.bool, device=device)
    kept[fast] = True
    assert pre.reshape(-1)[kept].min() > pre.reshape(-1)[~kept].max()


def test_rectangle_kernel_is_open():
    u = torch.tensor([-0.6, -0.5, -0.1, 0.0, 0.4999, 0.5, 0.7])
    assert rectangle(u).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
