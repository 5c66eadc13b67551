"""The embedding score on planted contexts: an explanation that names what the activating
contexts are about scores near 1, one that names the non-activating contexts near 0."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from saelab.autointerp.backends.embedder import load_embedder
from saelab.autointerp.feature_examples import Context
from saelab.autointerp.scorers.embedding import MemoEmbedder, embed_contexts, embedding_scores

COOKING = [
    "She stirred the onions into the hot pan and added garlic.",
    "Knead the dough, let it rise, then bake the bread for forty minutes.",
    "The chef seasoned the soup with salt, pepper and fresh basil.",
    "Simmer the tomato sauce slowly while the pasta boils.",
    "He roasted the chicken with lemon and rosemary for dinner.",
]
CARS = [
    "The mechanic replaced the spark plugs and checked the engine oil.",
    "This sedan has a turbocharged four-cylinder engine and a manual gearbox.",
    "She shifted into fourth gear and the car accelerated down the highway.",
    "The truck's transmission failed, so we towed it to the garage.",
    "Electric vehicles need no oil changes but their batteries wear out.",
]


def context(text: str, index: int, act: float) -> Context:
    """A window whose tokens are the text's words (leading spaces kept, as decoded tokens are)."""
    words = text.split(" ")
    tokens = tuple([words[0], *(" " + w for w in words[1:])])
    return Context(tokens, tuple(range(len(tokens))), tuple([act] * len(tokens)), (index, 0))


def planted() -> tuple[list[Context], np.ndarray]:
    contexts = [context(t, i, 1.0) for i, t in enumerate(COOKING)]
    contexts += [context(t, len(COOKING) + i, 0.0) for i, t in enumerate(CARS)]
    return contexts, np.array([1] * len(COOKING) + [0] * len(CARS))


class KeywordEmbedder:
    """A transparent stand-in embedding: counts of a few words. It makes the planted answers
    exact, so the score's bookkeeping (order, NaNs, reuse) is checked without a model."""

    vocab = ("food", "cooking", "bake", "soup", "cars", "engines", "engine", "car")

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(texts))
        words = [t.lower().replace(".", " ").replace(",", " ").split() for t in texts]
        return np.array([[w.count(v) for v in self.vocab] + [1e-3] for w in words], dtype=np.float32)


def test_keyword_embedding_gives_the_planted_order_and_nan_for_empty():
    contexts = [context(t, i, 0.0) for i, t in enumerate(["bake the bread", "a soup", "the car", "engine oil"])]
    labels = np.array([1, 1, 0, 0])
    emb = KeywordEmbedder()
    scores = embedding_scores(emb, ["food and cooking, bake soup", "", "cars and engines, car engine"], contexts,
                              labels)  # fmt: skip
    assert scores[0] == 1.0 and scores[2] == 0.0 and np.isnan(scores[1])
    assert emb.calls == [4, 2]  # contexts once, the two non-empty explanations in one batch


def test_precomputed_context_embeddings_are_used_and_give_the_same_scores():
    contexts = [context(t, i, 0.0) for i, t in enumerate(["bake the bread", "a soup", "the car", "engine oil"])]
    labels = [1, 1, 0, 0]
    emb = KeywordEmbedder()
    docs = embed_contexts(emb, contexts)
    again = embedding_scores(emb, ["bake soup", "car engine"], contexts, labels, context_embeddings=docs)
    assert emb.calls == [4, 2]
    np.testing.assert_array_equal(again, embedding_scores(KeywordEmbedder(), ["bake soup", "car engine"],
                                                          contexts, labels))  # fmt: skip
    with pytest.raises(ValueError, match="context_embeddings"):
        embedding_scores(emb, ["soup"], contexts, labels, context_embeddings=docs[:3])


def test_bad_scoring_sets_raise_a_clear_error():
    contexts, labels = planted()
    emb = KeywordEmbedder()
    with pytest.raises(ValueError, match="No scoring contexts"):
        embedding_scores(emb, ["food"], [], [])
    with pytest.raises(ValueError, match="both activating and non-activating"):
        embedding_scores(emb, ["food"], contexts, np.ones(len(contexts), dtype=int))
    with pytest.raises(ValueError, match="one label per context"):
        embedding_scores(emb, ["food"], contexts, labels[:-1])
    with pytest.raises(TypeError, match="not one string"):
        embedding_scores(emb, "food", contexts, labels)
    assert emb.calls == []  # every check comes before any embedding


@pytest.mark.slow
def test_real_explanation_scores_near_one_and_shuffled_near_zero():
    contexts, labels = planted()
    scores = embedding_scores(load_embedder(), ["food and cooking", "cars and engines", "  "], contexts, labels)
    assert scores[0] > 0.95
    assert scores[1] < 0.05
    assert np.isnan(scores[2])


def test_memo_embedder_embeds_each_text_once_and_returns_the_same_vectors():
    calls: list[list[str]] = []

    class Counting(KeywordEmbedder):
        def encode(self, texts, batch_size=64):
            calls.append(list(texts))
            return super().encode(texts, batch_size)

    inner = Counting()
    memo = MemoEmbedder(inner)
    first = memo.encode(["food here", "cars there", "food here"])
    second = memo.encode(["cars there", "new text"])
    assert calls == [["food here", "cars there"], ["new text"]]
    np.testing.assert_allclose(first, KeywordEmbedder().encode(["food here", "cars there", "food here"]), atol=1e-6)
    np.testing.assert_allclose(second[0], first[1])
