"""What the dashboards add to the examples pass: per-feature statistics of fixed size, updated
one chunk at a time (each is an :class:`~saelab.autointerp.pass_state.Observer`).

* :class:`ActivationHistogram`: every firing token's activation, in fine log-spaced bins
  (the final histogram's range, the feature's maximum, is only known at the end, so the
  pass bins finely on a fixed scale and the dashboard re-bins linearly), plus their sum.
* :class:`Coactivation`: for each feature, on how many tokens every other feature fires too.
* :class:`Reconstruction`: the SAE's explained variance on the source.

Suffixes: ``T`` tokens, ``C`` encoded columns, ``S`` the dashboard's features, ``F`` all
features, ``D`` the model's width, ``B`` fine bins.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor

from saelab.dashboards.data import Histogram
from saelab.evals.metrics import explained_variance_from_sums

LOG_LOW, LOG_HIGH, BINS_PER_DECADE = -4.0, 5.0, 48
"""Fine bins cover activations from 1e-4 to 1e5 (below and above land in the end bins), 48
per decade: a bin is 5% wide, finer than any of the display's 40 linear bars above 1/20
of the maximum."""
N_FINE = int((LOG_HIGH - LOG_LOW) * BINS_PER_DECADE)


def _positions(columns: Int[Tensor, " C"], features: Int[Tensor, " S"]) -> Int[Tensor, " S"]:
    """Where each of ``features`` sits in the sorted ``columns``; every feature must be there."""
    pos = torch.searchsorted(columns, features.to(columns.device))
    if bool((pos >= len(columns)).any()) or not bool((columns[pos.clamp_max(len(columns) - 1)] == features).all()):
        raise ValueError("the pass did not encode every feature the dashboard needs (encode_all=True is required)")
    return pos


class ActivationHistogram:
    """Fine log-binned counts and the sum of the activations of ``features`` where they fire."""

    key = f"histogram:{LOG_LOW}:{LOG_HIGH}:{BINS_PER_DECADE}"

    def __init__(self, features: list[int]) -> None:
        self.features = torch.tensor(features)
        self.counts_SB = torch.zeros((len(features), N_FINE), dtype=torch.int64)
        self.sum_S = torch.zeros(len(features), dtype=torch.float64)

    def update(self, acts_TC: Float[Tensor, "T C"], columns: Int[Tensor, " C"], inputs_TD: Tensor) -> None:
        positions = _positions(columns, self.features)
        every = len(positions) == acts_TC.shape[1] and bool((positions == torch.arange(len(positions))).all())
        acts = acts_TC if every else acts_TC[:, positions]  # the copy costs ~0.1 s a chunk for 4,608 features
        token, feature = (acts > 0).nonzero(as_tuple=True)
        values = acts[token, feature].double()
        fine = ((values.log10() - LOG_LOW) * BINS_PER_DECADE).floor().clamp(0, N_FINE - 1).long()
        flat = feature.cpu() * N_FINE + fine.cpu()
        counts = torch.bincount(flat, minlength=self.counts_SB.numel()).reshape(self.counts_SB.shape)
        self.counts_SB = self.counts_SB + counts
        self.sum_S = self.sum_S + acts.clamp_min(0).double().sum(dim=0).cpu()

    def state(self) -> dict[str, Tensor]:
        return {"counts": self.counts_SB, "sum": self.sum_S}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.counts_SB, self.sum_S = state["counts"], state["sum"]

    def histogram(self, j: int, maximum: float, n_bins: int) -> Histogram:
        """Feature ``self.features[j]``'s histogram: ``n_bins`` equal bars from 0 to ``maximum``,
        each fine bin counted in the bar that holds its geometric centre."""
        counts = self.counts_SB[j].numpy()
        if maximum <= 0 or counts.sum() == 0:
            return Histogram((), ())
        centres = 10 ** (LOG_LOW + (np.arange(N_FINE) + 0.5) / BINS_PER_DECADE)
        bars = np.clip(np.floor(centres / maximum * n_bins), 0, n_bins - 1).astype(np.int64)
        out = np.bincount(bars, weights=counts, minlength=n_bins).astype(np.int64)
        edges = np.linspace(0.0, maximum, n_bins + 1)
        return Histogram(tuple(float(e) for e in edges), tuple(int(c) for c in out))


class Coactivation:
    """``counts_SF[s, f]``: tokens on which feature ``features[s]`` and feature ``f`` both fire,
    and ``fired_F``: tokens on which each feature fires. Built from the sparse firing pattern
    (an SAE fires a few dozen features per token), so a chunk costs ~ tokens x L0² additions."""

    key = "coactivation:1"

    def __init__(self, features: list[int], n_features: int) -> None:
        self.features = torch.tensor(features)
        self.n_features = n_features
        self.counts_SF = torch.zeros((len(features), n_features), dtype=torch.float32)
        self.fired_F = torch.zeros(n_features, dtype=torch.int64)

    def update(self, acts_TC: Float[Tensor, "T C"], columns: Int[Tensor, " C"], inputs_TD: Tensor) -> None:
        token, col = (acts_TC > 0).nonzero(as_tuple=True)
        feature = columns[col].cpu().numpy()
        fires = sp.csr_matrix((np.ones(len(feature), np.float32), (token.cpu().numpy(), feature)),
                              shape=(acts_TC.shape[0], self.n_features))  # fmt: skip
        both = (fires[:, self.features.numpy()].T @ fires).tocoo()  # [S, F], sparse
        counts = self.counts_SF.clone()
        counts.view(-1)[torch.from_numpy(both.row.astype(np.int64) * self.n_features + both.col)] += torch.from_numpy(
            both.data.astype(np.float32)
        )
        self.counts_SF = counts
        self.fired_F = self.fired_F + torch.from_numpy(np.asarray(fires.sum(axis=0)).ravel().astype(np.int64))

    def state(self) -> dict[str, Tensor]:
        return {"counts": self.counts_SF, "fired": self.fired_F}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.counts_SF, self.fired_F = state["counts"], state["fired"]

    def top(self, j: int, n: int) -> list[tuple[int, float, float]]:
        """(feature, Jaccard index, share of this feature's tokens) of the ``n`` features that
        fire with ``features[j]`` most, by Jaccard: P(other | this) alone would rank the densest
        features first for everyone."""
        own = int(self.features[j])
        both = self.counts_SF[j].double()
        fired = self.fired_F.double()
        if fired[own] == 0:
            return []
        jaccard = both / (fired[own] + fired - both).clamp_min(1)
        jaccard[own] = -1.0
        k = min(n, int((both > 0).sum()) - (1 if both[own] > 0 else 0))
        if k <= 0:
            return []
        picked = jaccard.topk(k).indices.tolist()
        return [(f, float(jaccard[f]), float(both[f] / fired[own])) for f in picked]


class Reconstruction:
    """Sums for the explained variance of ``sae`` over the pass's tokens: 1 - SSE / SST, with
    SST around the per-dimension mean (as :mod:`saelab.evals.metrics` defines it)."""

    key = "reconstruction:1"

    def __init__(self, sae: SAE) -> None:
        self.sae = sae
        self.sums = torch.zeros(2, dtype=torch.float64)  # squared error, tokens
        self.sum_D: Tensor | None = None
        self.sum_sq_D: Tensor | None = None

    def update(self, acts_TC: Float[Tensor, "T C"], columns: Int[Tensor, " C"], inputs_TD: Tensor) -> None:
        if len(columns) != self.sae.cfg.d_sae:
            raise ValueError("the reconstruction needs every feature encoded (encode_all=True)")
        with torch.inference_mode():
            recon = self.sae.decode(acts_TC.to(self.sae.W_dec.dtype)).float()
        x = inputs_TD.float()
        err = float(((recon - x) ** 2).sum())
        zero = torch.zeros(x.shape[1], dtype=torch.float64)
        self.sum_D = (self.sum_D if self.sum_D is not None else zero) + x.double().sum(dim=0).cpu()
        self.sum_sq_D = (self.sum_sq_D if self.sum_sq_D is not None else zero) + (x.double() ** 2).sum(dim=0).cpu()
        self.sums = self.sums + torch.tensor([err, x.shape[0]], dtype=torch.float64)

    def state(self) -> dict[str, Tensor]:
        d = int(self.sae.cfg.d_in)
        empty = torch.zeros(d, dtype=torch.float64)
        return {"sums": self.sums, "sum": self.sum_D if self.sum_D is not None else empty,
                "sum_sq": self.sum_sq_D if self.sum_sq_D is not None else empty}  # fmt: skip

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.sums, self.sum_D, self.sum_sq_D = state["sums"], state["sum"], state["sum_sq"]

    def explained_variance(self) -> float | None:
        n = float(self.sums[1])
        if n < 2 or self.sum_D is None or self.sum_sq_D is None:
            return None
        total = float((self.sum_sq_D - self.sum_D**2 / n).sum())
        return explained_variance_from_sums(float(self.sums[0]), total, int(n))


def fine_bin_of(value: float) -> int:
    """The fine bin a positive activation falls in (for tests)."""
    return int(min(N_FINE - 1, max(0, math.floor((math.log10(value) - LOG_LOW) * BINS_PER_DECADE))))
