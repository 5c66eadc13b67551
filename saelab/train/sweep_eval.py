"""Every member of a sweep evaluated on the store's held-out tokens, in one frame.

The members share a hook, so :func:`saelab.evals.evaluate_saes` runs the clean and
zero-ablated passes once for all of them. Columns: ``member, activation, d_sae, k,
l1_coefficient, l0_coefficient`` (NaN where an architecture has no such field), then the
harness's ``l0, explained_variance, explained_variance_typical`` (EV without massive
activations), ``ce_loss_recovered, kl_div, dead_fraction``, and the training end point.
:func:`prefix_explained_variance` reads a Matryoshka SAE's nested levels one by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer

from saelab.evals.harness import evaluate_saes
from saelab.store import ActivationStore
from saelab.train.base import TrainableSAE
from saelab.train.export import to_sae_lens
from saelab.train.sweep import SweepResult

SETTINGS = ("k", "l1_coefficient", "l0_coefficient")
METRICS = ("l0", "explained_variance", "explained_variance_typical", "ce_loss_recovered", "kl_div", "dead_fraction")


def evaluate_sweep(
    model: HookedTransformer,
    sweep: SweepResult | Mapping[str, TrainableSAE[Any]],
    store: ActivationStore,
    *,
    max_sequences: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per member (see the module docstring), on held-out sequences training never saw."""
    saes = {name: r.sae for name, r in sweep.members.items()} if isinstance(sweep, SweepResult) else dict(sweep)
    if not saes:
        raise ValueError("The sweep has no member to evaluate")
    tokens = store.tokens("held_out")
    if max_sequences is not None:
        tokens = tokens[:max_sequences]
    device = model.cfg.device
    lens = {name: to_sae_lens(sae, device=device) for name, sae in saes.items()}
    results = evaluate_saes(model, lens, tokens, batch_size=batch_size, progress=progress)
    rows = []
    for name, sae in saes.items():
        cfg = sae.cfg
        row: dict[str, Any] = {"member": name, "activation": cfg.activation, "d_sae": cfg.d_sae}
        row.update({s: float(getattr(cfg, s)) if hasattr(cfg, s) else float("nan") for s in SETTINGS})
        row.update({m: float(getattr(results[name], m)) for m in METRICS})
        if isinstance(sweep, SweepResult):
            final = sweep.members[name].final
            row.update(train_l0=final.get("l0"), train_explained_variance=final.get("explained_variance"))
        rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def prefix_explained_variance(
    sae: TrainableSAE[Any], x_ND: Float[Tensor, "n d_in"], sizes: Sequence[int], chunk: int = 4096
) -> pd.Series:
    """Explained variance of ``x_ND`` reconstructed from the first ``m`` latents alone, per m in
    ``sizes`` (a Matryoshka SAE's levels; for another SAE the same prefixes are a baseline,
    its latent order being arbitrary). The code is the SAE's own ``encode`` over all latents."""
    if not sizes or any(not 0 < m <= sae.cfg.d_sae for m in sizes):
        raise ValueError(f"prefix sizes must lie in [1, d_sae={sae.cfg.d_sae}], got {list(sizes)}")
    sse = {m: 0.0 for m in sizes}
    mean = x_ND.double().mean(0)
    total = float((x_ND.double() - mean).pow(2).sum())
    for lo in range(0, x_ND.shape[0], chunk):
        x = x_ND[lo : lo + chunk].to(sae.device, sae.dtype)
        feats = sae.encode(x)
        for m in sizes:
            x_hat = (feats[:, :m] @ sae.W_dec[:m] + sae.b_dec) / sae.input_scale  # decode() of a prefix
            sse[m] += float((x.double() - x_hat.double()).pow(2).sum())
    return pd.Series({m: 1 - sse[m] / total for m in sizes}, name="explained_variance").rename_axis("prefix")
