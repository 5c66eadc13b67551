"""Sets of directions to explain, all read from the same residual-stream activations.

Cunningham et al. (2023) compare the interpretability of an SAE's features with the
model's own basis (neurons of the residual stream), PCA, ICA and random directions. Each
is a :class:`Decomposition`: ``encode`` maps ``[n, d_model]`` activations to
``[n, n_features]`` activations. The SAE is sparse (a feature fires when it is above 0);
the others are dense, and the examples pass gives each of their directions a firing
threshold and a sign (see ``collect.py``), the same rule for all of them.

PCA and ICA are fitted on a sample of activations that the caller draws; draw it from
text that is not scored (the store's train split), so no direction is fitted to the
examples that judge it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float
from sae_lens import SAE
from torch import Tensor

from saelab._util.keys import sae_identity, stable_hash, tensors_digest
from saelab.extract.hooks import encode_activations

log = logging.getLogger(__name__)


@dataclass
class Decomposition:
    """Directions ``W [n_features, d_model]`` applied to centred activations, or an SAE."""

    name: str
    """"sae", "neurons", "pca", "ica", "random", or a user's name."""
    weights: Float[Tensor, "n_features d_model"] | None = None
    """Read-out directions (None for an SAE, which encodes with its own encoder)."""
    mean: Float[Tensor, " d_model"] | None = None
    """Subtracted before projecting (None: nothing)."""
    sae: SAE | None = None
    directions: Float[Tensor, "n_features d_model"] | None = None
    """Write-out directions (an SAE's decoder rows, the mixing matrix of ICA) for finding a
    feature's decoder-similar neighbours; None when they are the read-out directions."""
    key: str = field(default="")

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.sae is None):
            raise ValueError("A decomposition is either an SAE or a matrix of directions, exactly one of the two.")
        if not self.key:
            tensors = {"w": self.weights} if self.weights is not None else {}
            if self.mean is not None:
                tensors["mean"] = self.mean
            ident = sae_identity(self.sae) if self.sae is not None else tensors_digest(tensors)
            self.key = stable_hash([self.name, ident])

    @property
    def sparse(self) -> bool:
        """Whether 0 means "does not fire" (an SAE); dense directions need a threshold."""
        return self.sae is not None

    @property
    def n_features(self) -> int:
        return int(self.sae.cfg.d_sae) if self.sae is not None else int(self.weights.shape[0])  # type: ignore[union-attr]

    def write_directions(self) -> Float[Tensor, "n_features d_model"]:
        if self.directions is not None:
            return self.directions
        if self.sae is not None:
            return self.sae.W_dec.detach()
        return self.weights  # type: ignore[return-value]

    def encode(self, acts: Float[Tensor, "n d_model"]) -> Float[Tensor, "n n_features"]:
        if self.sae is not None:
            with torch.inference_mode():
                return encode_activations(self.sae, acts).float()
        weights = self.weights.to(acts.device)  # type: ignore[union-attr]
        centred = acts - self.mean.to(acts.device) if self.mean is not None else acts
        return centred @ weights.T


def sae_directions(sae: SAE, name: str = "sae") -> Decomposition:
    return Decomposition(name, sae=sae)


def neurons(d_model: int) -> Decomposition:
    """The residual stream's own basis: feature i is coordinate i."""
    return Decomposition("neurons", weights=torch.eye(d_model))


def random_directions(d_model: int, n_features: int | None = None, seed: int = 0) -> Decomposition:
    """Unit directions drawn uniformly on the sphere (a floor: no structure was looked for)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_features or d_model, d_model, generator=gen)
    return Decomposition("random", weights=w / w.norm(dim=1, keepdim=True))


def pca(sample: Float[Tensor, "n d_model"], n_components: int | None = None) -> Decomposition:
    """Principal directions of the centred sample, largest variance first."""
    x = sample.double()
    mean = x.mean(dim=0)
    _, sv, vh = torch.linalg.svd(x - mean, full_matrices=False)
    # Directions past the sample's rank (n - 1 or fewer when n <= d_model) have zero variance
    # and are arbitrary; leave them out.
    rank = int((sv > sv[0] * max(x.shape) * torch.finfo(x.dtype).eps).sum())
    k = min(n_components or vh.shape[0], max(1, rank))
    return Decomposition("pca", weights=vh[:k].float(), mean=mean.float())


def ica(sample: Float[Tensor, "n d_model"], n_components: int | None = None, seed: int = 0,
        max_iter: int = 400) -> Decomposition:  # fmt: skip
    """Independent components (scikit-learn's FastICA, unit-variance whitening)."""
    from sklearn.decomposition import FastICA  # heavy import, only when ICA is asked for

    # float32, and for a sample with more rows than dimensions the eigh whitening (of the
    # d x d covariance, not an SVD of the n x d sample): less work, and ICA needs no float64.
    x = sample.float().cpu().numpy()
    # Whitening divides by each component's singular value; past the sample's rank (n - 1 or
    # fewer when n <= d_model) they are ~0 and the components blow up to ~1e14.
    k = min(n_components or x.shape[1], max(1, int(np.linalg.matrix_rank(x - x.mean(axis=0)))))
    model = FastICA(n_components=k, whiten="unit-variance", whiten_solver="eigh" if len(x) > x.shape[1] else "svd",
                    random_state=seed, max_iter=max_iter, tol=1e-3)  # fmt: skip
    model.fit(x)
    if model.n_iter_ >= max_iter:
        log.warning("FastICA stopped at max_iter=%d before converging; the components are still usable.", max_iter)
    # sources = (x - mean) @ components_.T; the mixing matrix's columns are the write-out directions.
    return Decomposition(
        "ica",
        weights=torch.from_numpy(np.asarray(model.components_)).float(),
        mean=torch.from_numpy(np.asarray(model.mean_)).float(),
        directions=torch.from_numpy(np.asarray(model.mixing_).T.copy()).float(),
    )
