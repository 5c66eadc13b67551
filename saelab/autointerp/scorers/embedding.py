"""The embedding score: does an explanation sit closer, in a sentence-embedding space, to the
contexts where its feature fires than to those where it does not?

For one feature, the explanation is embedded as a query and each scoring context as a
document; the score is the AUROC of their cosine similarity for activating (label 1) vs
non-activating (label 0) contexts (delphi's embedding scorer, Paulo et al. 2024). It needs
no language model and no threshold, so it is cheap enough to score every feature, and
the shuffled-explanation control (another feature's explanation on the same contexts)
costs one more embedding. all-MiniLM-L6-v2 is symmetric: queries get no prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from jaxtyping import Float

from saelab.autointerp.feature_examples import Context
from saelab.autointerp.scorers.metrics import auroc

DEFAULT_BATCH = 64


class TextEmbedder(Protocol):
    """What the score needs of an embedding model (``saelab.autointerp.backends.embedder.Embedder``)."""

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> Float[np.ndarray, "n dim"]: ...


def embed_contexts(
    embedder: TextEmbedder, contexts: Sequence[Context], batch_size: int = DEFAULT_BATCH
) -> Float[np.ndarray, "n_contexts dim"]:
    """Each context's text embedded once, to reuse across the explanations of a feature."""
    if len(contexts) == 0:
        raise ValueError("No contexts to embed; a feature needs scoring contexts to be scored")
    return embedder.encode([c.text for c in contexts], batch_size=batch_size)


def embedding_scores(
    embedder: TextEmbedder,
    explanations: Sequence[str],
    contexts: Sequence[Context],
    labels: Sequence[int] | np.ndarray,
    context_embeddings: Float[np.ndarray, "n_contexts dim"] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Float[np.ndarray, " n_explanations"]:
    """The embedding score (an AUROC in [0, 1], 0.5 = chance) of each explanation on one
    feature's scoring contexts; NaN for an empty explanation.

    ``labels[i]`` is 1 when ``contexts[i]`` activates the feature, else 0 (as
    ``FeatureExamples.scoring_contexts`` returns). Pass ``context_embeddings`` from
    :func:`embed_contexts` to skip embedding the contexts again.
    """
    if isinstance(explanations, str):
        raise TypeError("explanations must be a sequence of strings, not one string; wrap it in a list")
    y = _check_labels(labels, len(contexts))
    docs = context_embeddings if context_embeddings is not None else embed_contexts(embedder, contexts, batch_size)
    docs = np.asarray(docs, dtype=np.float32)
    if docs.ndim != 2 or docs.shape[0] != len(contexts):
        raise ValueError(f"context_embeddings must be [{len(contexts)}, dim], got shape {tuple(docs.shape)}")
    out = np.full(len(explanations), np.nan, dtype=np.float64)
    present = [i for i, text in enumerate(explanations) if text.strip()]
    if not present:
        return out
    queries = embedder.encode([explanations[i] for i in present], batch_size=batch_size)
    if queries.shape[1] != docs.shape[1]:
        raise ValueError(
            f"Explanation embeddings have {queries.shape[1]} dimensions but the context embeddings "
            f"{docs.shape[1]}; were they made by the same model?"
        )
    similarity = _unit(queries) @ _unit(docs).T
    for row, i in enumerate(present):
        out[i] = auroc(y, similarity[row])
    return out


def _check_labels(labels: Sequence[int] | np.ndarray, n_contexts: int) -> np.ndarray:
    if n_contexts == 0:
        raise ValueError("No scoring contexts: the embedding score needs activating and non-activating ones")
    y = np.asarray(labels)
    if y.shape != (n_contexts,):
        raise ValueError(f"Need one label per context ({n_contexts}); got labels of shape {tuple(y.shape)}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 1 (activating) or 0 (non-activating)")
    n_pos = int(y.sum())
    if n_pos in (0, n_contexts):
        raise ValueError(
            f"The embedding score needs both activating and non-activating contexts; got {n_pos} activating "
            f"of {n_contexts}"
        )
    return y.astype(np.int64)


def _unit(x: Float[np.ndarray, "n dim"]) -> Float[np.ndarray, "n dim"]:
    """Rows scaled to unit length, so a dot product is a cosine whatever the embedder returns."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class MemoEmbedder:
    """An embedder that embeds each distinct text once per run. A feature's scoring windows
    are scored for every explainer, and each explanation is also another feature's shuffled
    control, so most texts come back; the embedder gives a text the same vector in any batch
    (tested to 1e-5), so reusing it changes nothing but the time."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self._seen: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> Float[np.ndarray, "n dim"]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._seen))
        if missing:
            for text, vector in zip(missing, self.embedder.encode(missing, batch_size=batch_size), strict=True):
                self._seen[text] = np.asarray(vector, dtype=np.float32)
        return np.stack([self._seen[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)
