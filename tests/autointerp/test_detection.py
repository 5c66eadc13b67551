"""Detection and fuzzing scoring, on planted judges with known answers: a keyword judge that
says yes when a word of the explanation is in the text (or among the marked tokens), and a
judge that always says no (the all-negative trap)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from saelab.autointerp.backends.base import Backend
from saelab.autointerp.feature_examples import Context
from saelab.autointerp.scorers.detection import (
    DetectionConfig,
    detection_probabilities,
    detection_prompt,
    detection_score,
    explanation_language_warning,
    fuzzing_marks,
    fuzzing_prompt,
    shown_contexts,
)

POSITIVES = ["the cat sat on the mat", "my cat likes warm milk", "a black cat crossed the road"]
NEGATIVES = ["the dog ran in the park", "stocks fell sharply on monday", "she plays the violin well",
             "rain is expected this weekend", "he wrote a long letter home"]  # fmt: skip


def context(text: str, fires_on: str = "cat", act: float = 2.0, source: int = 0) -> Context:
    tokens = tuple(f" {w}" for w in text.split())
    acts = tuple(act if t.strip() == fires_on else 0.0 for t in tokens)
    return Context(tokens, tuple(range(len(tokens))), acts, (source, 0))


def planted(n_pos: int = 3, n_neg: int = 5) -> tuple[list[Context], np.ndarray]:
    contexts = [context(t, source=i) for i, t in enumerate(POSITIVES[:n_pos] + NEGATIVES[:n_neg])]
    return contexts, np.array([1] * n_pos + [0] * n_neg)


def _field(chat, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", chat[-1]["content"], re.MULTILINE)
    assert match, f"no {name!r} line in {chat[-1]['content']!r}"
    return match.group(1)


class KeywordJudge:
    """P(yes) = 0.9 iff a word of the explanation is among the words of the prompt's text
    (with ``marked_only``, among its ``<<marked>>`` tokens), else 0.1."""

    name = "keyword-judge"

    def __init__(self, marked_only: bool = False) -> None:
        self.marked_only = marked_only
        self.calls: list[int] = []

    def complete(self, chats, *, max_tokens=48, temperature=0.0, seed=0) -> list[str]:
        raise AssertionError("a judge is never asked to generate")

    def yes_probability(self, chats) -> np.ndarray:
        self.calls.append(len(chats))
        out = []
        for chat in chats:
            keywords = set(_field(chat, "Feature").lower().split())
            text = _field(chat, "Text")
            seen = " ".join(re.findall(r"<<(.*?)>>", text)) if self.marked_only else text
            out.append(0.9 if keywords & set(seen.lower().split()) else 0.1)
        return np.array(out)


class AlwaysNo(KeywordJudge):
    name = "always-no"

    def yes_probability(self, chats) -> np.ndarray:
        self.calls.append(len(chats))
        return np.full(len(chats), 0.2)


def test_planted_judges_are_backends():
    assert isinstance(KeywordJudge(), Backend) and isinstance(AlwaysNo(), Backend)


def test_a_right_explanation_scores_perfectly_and_a_shuffled_one_at_chance():
    contexts, labels = planted()
    judge = KeywordJudge()
    p = detection_probabilities(judge, ["cat", "river water"], contexts)
    assert p.shape == (2, len(contexts)) and judge.calls == [2 * len(contexts)]
    real, shuffled = detection_score(p[0], labels), detection_score(p[1], labels)
    assert real.balanced_accuracy == 1.0 and real.auroc == 1.0 and real.accuracy == 1.0
    assert shuffled.balanced_accuracy == 0.5 and shuffled.auroc == 0.5
    assert (real.n_positive, real.n_negative) == (3, 5)


def test_fuzzing_with_the_right_explanation_scores_perfectly():
    contexts, labels = planted()
    judge = KeywordJudge(marked_only=True)
    p = detection_probabilities(judge, ["cat", "dog"], contexts, mode="fuzzing", labels=labels)
    assert judge.calls == [2 * len(contexts)]
    assert detection_score(p[0], labels).auroc == 1.0
    assert detection_score(p[0], labels).balanced_accuracy == 1.0
    # "dog" is in a negative context, but only the marked tokens count and "cat" is what is marked.
    assert detection_score(p[1], labels).balanced_accuracy <= 0.5


def test_an_always_no_judge_gets_the_all_negative_accuracy_and_chance_balanced_accuracy():
    contexts, labels = planted(n_pos=2, n_neg=5)
    score = detection_score(detection_probabilities(AlwaysNo(), ["cat"], contexts)[0], labels)
    assert score.accuracy == pytest.approx(5 / 7) and score.all_negative_accuracy == pytest.approx(5 / 7)
    assert score.balanced_accuracy == 0.5 and score.auroc == 0.5


def test_an_empty_explanation_scores_nan_without_a_call():
    contexts, labels = planted()
    judge = KeywordJudge()
    p = detection_probabilities(judge, ["", "  "], contexts)
    assert judge.calls == [] and np.isnan(p).all() and p.shape == (2, len(contexts))
    score = detection_score(p[0], labels)
    assert np.isnan(score.balanced_accuracy) and np.isnan(score.auroc) and np.isnan(score.accuracy)
    assert score.all_negative_accuracy == pytest.approx(5 / 8)
    mixed = detection_probabilities(judge, ["", "cat"], contexts)
    assert judge.calls == [len(contexts)] and np.isnan(mixed[0]).all() and not np.isnan(mixed[1]).any()


def test_detection_prompt_shows_the_explanation_and_the_plain_text():
    contexts, _ = planted()
    (text,) = shown_contexts(contexts[:1])
    chat = detection_prompt("cats and kittens", text)
    user = chat[-1]["content"]
    assert chat[0]["role"] == "system" and chat[-1]["role"] == "user"
    assert "cats and kittens" in user and "the cat sat on the mat" in user and "<<" not in user
    assert "yes or no" in user


def test_fuzzing_prompt_marks_the_activating_tokens():
    contexts, labels = planted()
    texts = shown_contexts(contexts, mode="fuzzing", labels=labels)
    assert texts[0] == "the <<cat>> sat on the mat"
    chat = fuzzing_prompt("cats", texts[0])
    assert "Text: the <<cat>> sat on the mat" in chat[-1]["content"] and "cats" in chat[-1]["content"]


def test_prompts_stay_short_for_a_24_token_context():
    words = "the quick brown fox jumps over the lazy dog while seven tired cats watch from a sunny garden wall".split()
    long = context(" ".join(words * 3))
    (text,) = shown_contexts([long])
    assert len(text.split()) == 24
    for chat in (detection_prompt("animals that are cats", text), fuzzing_prompt("animals that are cats", text)):
        # ~4 characters a token: 600 characters is ~150 tokens, 24 of them the context.
        assert sum(len(m["content"]) for m in chat) < 600


def test_fuzzing_marks_follow_the_threshold_and_the_peak():
    acts = (0.0, 2.0, 0.5, 0.7, 0.65)
    pos = Context(tuple(f" t{i}" for i in range(5)), (0, 1, 2, 3, 4), acts, (0, 0))
    negs = [context(t, source=i + 1) for i, t in enumerate(NEGATIVES)]
    labels = np.array([1] + [0] * len(negs))
    # threshold 0.68 drops 0.65; mark_fraction 0.3 of the peak 2.0 drops 0.5 and 0.
    marks = fuzzing_marks([pos, *negs], labels, threshold=0.68, config=DetectionConfig(mark_fraction=0.3))
    assert marks[0] == (False, True, False, True, False)
    assert all(sum(m) == 2 for m in marks[1:]), "negatives get as many marks as the positive"
    again = fuzzing_marks([pos, *negs], labels, threshold=0.68, config=DetectionConfig(mark_fraction=0.3))
    assert again == marks, "the random marks are seeded"
    reseeded = fuzzing_marks([pos, *negs], labels, threshold=0.68, config=DetectionConfig(seed=1))
    assert reseeded[1:] != marks[1:]


def test_fuzzing_needs_labels_and_bad_input_is_refused():
    contexts, labels = planted()
    with pytest.raises(ValueError, match="labels"):
        shown_contexts(contexts, mode="fuzzing")
    with pytest.raises(ValueError, match="mode"):
        shown_contexts(contexts, mode="simulation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        fuzzing_marks(contexts, labels[:-1], threshold=0.0)
    with pytest.raises(TypeError, match="sequence"):
        detection_probabilities(KeywordJudge(), "cat", contexts)
    with pytest.raises(ValueError, match="max_context_tokens"):
        DetectionConfig(max_context_tokens=0)


def test_a_backend_giving_the_wrong_number_of_probabilities_is_an_error():
    class Short(KeywordJudge):
        def yes_probability(self, chats) -> np.ndarray:
            return np.full(len(chats) - 1, 0.5)

    with pytest.raises(ValueError, match="shape"):
        detection_probabilities(Short(), ["cat"], planted()[0])


def test_language_warning_flags_mostly_non_ascii_explanations():
    assert explanation_language_warning("mentions of cats") == ""
    assert explanation_language_warning("café and naïve words") == ""
    assert explanation_language_warning("") == "" and explanation_language_warning("123 !!") == ""
    assert "non-ASCII" in explanation_language_warning("кошки и котята")
    assert "non-ASCII" in explanation_language_warning("猫和小猫 (cat)")
    assert explanation_language_warning("猫 (cat)") == "", "one CJK letter among English ones is fine"


@pytest.mark.slow
def test_the_embedded_model_scores_real_prompts(model):
    try:
        from saelab.autointerp.backends.local import LocalBackend
    except ImportError as error:
        pytest.skip(f"saelab.autointerp.backends.local.LocalBackend is not available yet: {error}")
    backend = LocalBackend(model)
    contexts, labels = planted()
    start = time.perf_counter()
    for mode in ("detection", "fuzzing"):
        p = detection_probabilities(backend, ["the word cat", "river water"], contexts, mode=mode, labels=labels)
        assert p.shape == (2, len(contexts)) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
        assert 0.0 <= detection_score(p[0], labels).auroc <= 1.0
    elapsed = time.perf_counter() - start
    assert elapsed > 0
