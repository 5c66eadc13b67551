"""The LLM explainer on planted backends: one that names the token marked most often in the
last request (a model with a known answer), and one that replies with fixed text."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from saelab.autointerp.explainers.llm import (
    UNUSABLE,
    WORKED_EXAMPLES,
    LlmExplainer,
    LlmExplainerConfig,
    clean_reply,
    explainer_prompt,
)
from saelab.autointerp.feature_examples import Context, FeatureExamples


def context(tokens: list[str], acts: list[float], source: int) -> Context:
    return Context(tuple(tokens), tuple(range(len(tokens))), tuple(acts), (source, 0))


def cat_feature(feature: int = 3, n: int = 4) -> FeatureExamples:
    tokens = [" the", " cat", " sat", " down", " on", " the", " mat"]
    explain = tuple(context(tokens, [0.0, 2.0 - 0.1 * i, 0.1, 0, 0, 0, 0], i) for i in range(n))
    return FeatureExamples(feature, "sae", 0.0, 0.01, 2.0, explain=explain)


class MostMarked:
    """Replies "the word X" for the span marked most often in the last user turn."""

    name = "most-marked"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def complete(self, chats, *, max_tokens=48, temperature=0.0, seed=0) -> list[str]:
        self.calls.append(len(chats))
        return [f"the word {Counter(re.findall(r'<<(.*?)>>', c[-1]['content'])).most_common(1)[0][0]}" for c in chats]

    def yes_probability(self, chats) -> np.ndarray:
        return np.full(len(chats), 0.5)


class Fixed(MostMarked):
    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    def complete(self, chats, *, max_tokens=48, temperature=0.0, seed=0) -> list[str]:
        self.calls.append(len(chats))
        return [self.reply] * len(chats)


def test_explains_a_planted_feature_from_its_marked_tokens():
    explanation = LlmExplainer(MostMarked()).explain(cat_feature())
    assert explanation.ok and explanation.text == "the word cat"
    assert (explanation.feature, explanation.explainer) == (3, "llm")


def test_many_features_are_explained_in_one_call_and_a_silent_one_is_skipped_without_one():
    backend = MostMarked()
    silent = FeatureExamples(9, "sae", 0.0, 0.0, 0.0)
    out = LlmExplainer(backend).explain_many([cat_feature(1), silent, cat_feature(2)])
    assert backend.calls == [2]
    assert [e.feature for e in out] == [1, 9, 2]
    assert out[1].skipped == "never fires in the pass" and out[1].text == "" and not out[1].ok
    assert out[0].ok and out[2].ok
    quiet = MostMarked()
    assert LlmExplainer(quiet).explain(silent).skipped and quiet.calls == []


def test_the_prompt_has_worked_examples_then_the_feature_with_its_active_tokens_marked():
    acts = [0.0, 0.0, 1.0, 0.2, 0.5, 0.0]
    feature = FeatureExamples(0, "sae", 0.0, 0.1, 1.0, explain=(
        context(["<|im_start|>", " I", " love", " my", " dog", "\n"], acts, 0),))  # fmt: skip
    chat = explainer_prompt(feature, LlmExplainerConfig(mark_fraction=0.3))
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * len(WORKED_EXAMPLES) + ["user"]
    assert chat[2]["content"] == WORKED_EXAMPLES[0][1]
    last = chat[-1]["content"]
    # 0.2 is under 0.3 of the peak; BOS is not shown; the newline stays on the line, escaped.
    assert "1. I <<love>> my <<dog>>\\n" in last
    assert "<|im_start|>" not in last


def test_the_prompt_shows_the_top_contexts_cut_around_their_peak():
    tokens = [f" w{i}" for i in range(60)]
    acts = [0.0] * 60
    acts[40] = 3.0
    feature = FeatureExamples(0, "sae", 0.0, 0.1, 3.0, explain=tuple(context(tokens, acts, i) for i in range(15)))
    config = LlmExplainerConfig(n_examples=10, max_context_tokens=24)
    last = explainer_prompt(feature, config)[-1]["content"]
    lines = [ln for ln in last.splitlines() if re.match(r"\d+\. ", ln)]
    assert len(lines) == 10
    assert all("<<w40>>" in ln and len(ln.split()) == 1 + 24 for ln in lines)


def test_whole_prompt_stays_short():
    tokens = [" word"] * 40
    acts = [1.0] * 40
    feature = FeatureExamples(0, "sae", 0.0, 0.1, 1.0, explain=tuple(context(tokens, acts, i) for i in range(10)))
    chat = explainer_prompt(feature)
    # Every token marked is the longest case; ~4 characters a token keeps it near 600 tokens.
    assert sum(len(m["content"]) for m in chat) < 2600


@pytest.mark.parametrize(
    ("reply", "cleaned"),
    [
        ('"Mentions of cats."\nSecond line', "Mentions of cats"),
        ("Explanation: four-digit years", "four-digit years"),
        ("\n\n  answer: 'the word cat'  ", "the word cat"),
        ("1. <<cat>> tokens", "cat tokens"),
        ("one two three four five six seven eight nine ten eleven twelve thirteen", None),
    ],
)
def test_reply_cleaning(reply, cleaned):
    if cleaned is None:
        assert clean_reply(reply, max_words=12).split() == reply.split()[:12]
    else:
        assert clean_reply(reply) == cleaned


@pytest.mark.parametrize(
    ("reply", "why"),
    [("", "empty"), ("  \n ", "empty"), ('"..."', "empty"), ("?!", "punctuation"),
     ("What does this feature detect?", "copies the instructions"), ("Reply with a short phrase.", "copies"),
     ("the cat sat down", ""), ("The cat sat down on the mat.", "copies a context")],
)  # fmt: skip
def test_an_unusable_reply_is_skipped_with_the_raw_reply(reply, why):
    explanation = LlmExplainer(Fixed(reply)).explain(cat_feature())
    if not why:  # four words quoted from a context can still be an explanation
        assert explanation.ok and explanation.text == reply
        return
    assert not explanation.ok and explanation.text == ""
    assert explanation.skipped.startswith(UNUSABLE) and why in explanation.skipped
    assert repr(reply) in explanation.skipped


def test_config_is_validated():
    with pytest.raises(ValueError, match="mark_fraction"):
        LlmExplainerConfig(mark_fraction=1.5)
    with pytest.raises(ValueError, match="n_examples"):
        LlmExplainerConfig(n_examples=0)
    with pytest.raises(TypeError, match="Backend"):
        LlmExplainer(object())  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_embedded_model_explains_and_prompts_fit_its_budget(model):
    from saelab.autointerp.scorers.detection import detection_prompt, fuzzing_prompt

    tok = model.tokenizer
    words = [" the", " cat", " sat", " on", " a", " warm", " mat", " near", " the", " door"] * 3
    acts = [2.0 if w == " cat" else 0.0 for w in words]
    feature = FeatureExamples(0, "sae", 0.0, 0.1, 2.0, explain=tuple(context(words, acts, i) for i in range(10)))
    text = "".join(words[:24]).strip()

    def n_tokens(chat) -> int:
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return len(tok.encode(text, add_special_tokens=False))

    assert n_tokens(explainer_prompt(feature)) < 650
    assert n_tokens(detection_prompt("the word cat", text)) < 130
    assert n_tokens(fuzzing_prompt("the word cat", text.replace("cat", "<<cat>>"))) < 140
    try:
        from saelab.autointerp.backends.local import LocalBackend
    except ImportError as error:
        pytest.skip(f"saelab.autointerp.backends.local.LocalBackend is not available yet: {error}")
    start = time.perf_counter()
    out = LlmExplainer(LocalBackend(model)).explain_many([feature, feature])
    assert time.perf_counter() - start > 0
    assert len(out) == 2 and all(e.explainer == "llm" and (e.ok or e.skipped.startswith(UNUSABLE)) for e in out)
    assert all(len(e.text.split()) <= 12 for e in out)
