"""Paired activation samples for matching by activation: row ``t`` of both sides is the same token.

A sample is any iterable of ``(chunk_a, chunk_b)`` pairs, each ``[n_tokens, d_sae]`` (sparse
or dense). Three ready-made ones:

* :func:`per_token_pairs`: features already extracted for the same texts (e.g. by
  ``saelab.cached_per_token``, which notebook 03 has anyway): no model, no encode.
* :func:`text_pairs`: texts run through the model once, both hooks read from that one
  pass, both SAEs encoded.
* :func:`store_pairs`: rows of an activation store that holds both hooks (its held-out split
  by default), encoded; no model forward at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from saelab.extract import PerTokenFeatures, extract_per_token_multi
from saelab.extract.hooks import encode_activations
from saelab.saes import sae_hook_name

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

    from saelab.store import ActivationStore

Pair = tuple[Any, Any]


def per_token_csr(features: PerTokenFeatures, max_tokens: int | None = None) -> sp.csr_matrix:
    """Every kept token's features as one ``[n_tokens, d_sae]`` CSR matrix (its own storage)."""
    n_rows = int(features.row_ptr.numel()) - 1
    matrix = sp.csr_matrix(
        (features.values.float().numpy(), features.feature_idx.numpy(), features.row_ptr.numpy()),
        shape=(n_rows, features.d_sae),
    )
    return matrix[:max_tokens] if max_tokens is not None else matrix


def per_token_pairs(a: PerTokenFeatures, b: PerTokenFeatures, *, max_tokens: int | None = None) -> list[Pair]:
    """The two SAEs' features on the same texts, as one pair of ``[n_tokens, d_sae]`` chunks.

    Both must come from the same texts with the same tokenization and BOS policy (as one
    ``cached_per_token`` call over several SAEs gives), so that rows are the same tokens.
    """
    if a.token_ids != b.token_ids or not torch.equal(a.text_row_start, b.text_row_start):
        raise ValueError(
            "The two PerTokenFeatures are not of the same tokens (different texts, tokenization or BOS "
            "policy); extract both from one call, e.g. saelab.cached_per_token(model, {a: sae_a, b: sae_b}, texts)."
        )
    return [(per_token_csr(a, max_tokens), per_token_csr(b, max_tokens))]


def text_pairs(
    model: HookedTransformer,
    sae_a: SAE,
    sae_b: SAE,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    progress: bool | None = None,
) -> list[Pair]:
    """Both SAEs' features on ``texts``, from one model pass (pads and BOS left out)."""
    if not texts:
        raise ValueError("texts is empty; activation matching needs a token sample")
    found = extract_per_token_multi(model, {"a": sae_a, "b": sae_b}, texts, batch_size=batch_size, progress=progress)
    return per_token_pairs(found["a"], found["b"])


def store_pairs(
    store: ActivationStore,
    sae_a: SAE,
    sae_b: SAE,
    *,
    split: str = "held_out",
    max_tokens: int | None = 100_000,
    batch_size: int = 4096,
    progress: bool = True,
) -> Iterator[Pair]:
    """Both SAEs' features on the same store rows, read in storage order at each SAE's hook."""
    hook_a, hook_b = sae_hook_name(sae_a), sae_hook_name(sae_b)
    missing = [h for h in (hook_a, hook_b) if h not in store.hooks]
    if missing:
        raise ValueError(f"The store has no activations at {missing}; it holds {list(store.hooks)}")
    rows = store.n_rows(split)  # type: ignore[arg-type]
    total = rows if max_tokens is None else min(rows, max_tokens)
    if total == 0:
        raise ValueError(f"The store's {split!r} split has no rows; activation matching needs a token sample")
    kwargs: dict[str, Any] = dict(split=split, shuffle=False, device="cpu")
    batches_a = store.iter_batches(hook_a, batch_size, **kwargs)
    batches_b = store.iter_batches(hook_b, batch_size, **kwargs)
    done = 0
    with tqdm(total=total, desc="encode sample", unit="tok", disable=not progress) as bar:
        for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
            take = min(len(acts_a), total - done)
            with torch.inference_mode():
                feats_a = encode_activations(sae_a, acts_a[:take]).float().cpu().numpy()
                feats_b = encode_activations(sae_b, acts_b[:take]).float().cpu().numpy()
            yield sp.csr_matrix(feats_a), sp.csr_matrix(np.asarray(feats_b))
            done += take
            bar.update(take)
            if done >= total:
                return
