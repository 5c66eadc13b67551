"""An explainer that asks a language model: the feature's top contexts in, a short phrase out.

The prompt follows Bills et al. (2023) and delphi: a short system message, two fixed worked
examples (their answers as assistant turns), then the feature's strongest explain-split
contexts with its activating tokens marked ``<<like this>>``, and a request for a short
phrase. Everything is kept small because the default judge is a 135M model on CPU: each
context is cut to a few tokens around its peak, and the whole prompt stays under ~600 tokens.

A reply that carries no explanation (empty, punctuation only, or the instructions echoed
back) is recorded as *skipped* with the raw reply quoted, never passed off as an explanation.

Contexts are rendered by :mod:`saelab.autointerp.rendering`, as the detection and fuzzing
scorers render them for their judge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Backend, Chat, Message
from saelab.autointerp.explanation import NEVER_FIRES, Explanation
from saelab.autointerp.feature_examples import Context, FeatureExamples
from saelab.autointerp.rendering import MARK_CLOSE, MARK_OPEN, firing_marks, marked_text, shown_window

NAME = "llm"
UNUSABLE = "the model gave no usable explanation"
"""Start of the ``skipped`` reason when the reply carries no explanation."""

_PREFIX = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+)?(?:(?:explanation|answer|feature|description|phrase)\s*:\s*)*",
                     re.IGNORECASE)  # fmt: skip
MIN_COPIED_WORDS = 5
"""A reply of this many words or more found verbatim in a shown context is an echo, not an explanation."""
_QUOTES = "\"'`“”‘’«»"

SYSTEM = (
    "You explain what a feature of a language model detects. "
    "You see texts where it fires, with the tokens it fires on marked <<like this>>. "
    "Reply with one short phrase only."
)
REQUEST = "What does this feature detect? Reply with a short phrase."

# Two worked examples, in exactly the format of a real request (Bills et al. and delphi show
# the model solved cases first): one about token form, one about meaning.
WORKED_EXAMPLES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("The war ended in <<1945>>, and the city", "she was born in <<1987>> in a small",
         "prices rose from <<2001>> to <<2004>> across", "the treaty of <<1648>> ended the"),
        "four-digit years",
    ),
    (
        ("we walked along the <<river>> until the", "she poured a glass of <<water>> and",
         "heavy <<rain>> fell on the roof all", "the boat drifted across the <<lake>> at"),
        "bodies of water and rain",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class LlmExplainerConfig(JsonConfig):
    """How the LLM explainer builds its prompt and reads the reply."""

    n_examples: int = 10
    """How many of the feature's top explain contexts the prompt shows, strongest first."""
    max_context_tokens: int = 24
    """Each context is cut to at most this many tokens around its peak (short prompts for a small model)."""
    mark_fraction: float = 0.3
    """A token is marked when its activation is above this share of its context's peak."""
    max_words: int = 12
    """The explanation is cut to this many words."""
    max_reply_tokens: int = 32
    """Generation budget for the reply."""
    temperature: float = 0.0
    """0 for greedy decoding (reproducible explanations)."""
    seed: int = 0
    """Sampling seed when ``temperature`` > 0."""

    def __post_init__(self) -> None:
        problems = []
        for name in ("n_examples", "max_context_tokens", "max_words", "max_reply_tokens"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                problems.append(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not 0.0 <= self.mark_fraction < 1.0:
            problems.append(f"mark_fraction must be in [0, 1), got {self.mark_fraction!r}")
        if not self.temperature >= 0.0:
            problems.append(f"temperature must be >= 0, got {self.temperature!r}")
        self.raise_problems(problems)


def explain_context_line(context: Context, config: LlmExplainerConfig) -> str:
    """One explain context as the prompt shows it: cut around its peak, activating tokens marked."""
    shown = shown_window(context, config.max_context_tokens)
    return marked_text(shown.tokens, firing_marks(shown.acts, config.mark_fraction).tolist())


def _user_turn(lines: Sequence[str]) -> Message:
    numbered = "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))
    return {"role": "user", "content": f"Texts:\n{numbered}\n{REQUEST}"}


def explainer_prompt(examples: FeatureExamples, config: LlmExplainerConfig | None = None) -> list[Message]:
    """The chat that asks for ``examples``' explanation (the same for any backend)."""
    config = config or LlmExplainerConfig()
    chat: list[Message] = [{"role": "system", "content": SYSTEM}]
    for lines, answer in WORKED_EXAMPLES:
        chat += [_user_turn(lines), {"role": "assistant", "content": answer}]
    contexts = examples.explain[: config.n_examples]
    chat.append(_user_turn([explain_context_line(c, config) for c in contexts]))
    return chat


def clean_reply(reply: str, max_words: int = 12) -> str:
    """The explanation in a reply: its first non-empty line, without list bullets, an
    "Explanation:"-style prefix, quotes, markers or a final period, cut to ``max_words`` words."""
    line = next((ln for ln in reply.strip().splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
    line = line.strip().strip(_QUOTES).strip()
    words = line.split()[:max_words]
    return " ".join(words).rstrip(".").strip().strip(_QUOTES).strip()


def _normalized_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def unusable_reason(cleaned: str, shown: str = "") -> str:
    """Why a cleaned reply is no explanation ("" when it is one): empty, punctuation only, a
    verbatim copy of (part of) the instructions, or a long stretch copied from the ``shown``
    contexts (a small model often echoes a context instead of describing it)."""
    if not cleaned.strip():
        return "the reply is empty"
    words = " ".join(_normalized_words(cleaned))
    if not words:
        return "the reply is only punctuation"
    instructions = " ".join(_normalized_words(f"{SYSTEM} {REQUEST} Texts"))
    if " " in words and f" {words} " in f" {instructions} ":
        return "the reply copies the instructions"
    if words.count(" ") + 1 >= MIN_COPIED_WORDS and f" {words} " in f" {' '.join(_normalized_words(shown))} ":
        return "the reply copies a context"
    return ""


class LlmExplainer:
    """Explains features with a chat model behind a :class:`Backend`."""

    name = NAME

    def __init__(self, backend: Backend, config: LlmExplainerConfig | None = None) -> None:
        if not isinstance(backend, Backend):
            raise TypeError(f"LlmExplainer needs a Backend (complete, yes_probability, name), got {type(backend)}")
        self.backend = backend
        self.config = config or LlmExplainerConfig()

    def explain(self, examples: FeatureExamples) -> Explanation:
        """One feature's explanation (one backend call, none when it never fires)."""
        return self.explain_many([examples])[0]

    def explain_many(self, many: Sequence[FeatureExamples]) -> list[Explanation]:
        """One explanation per feature, in order, from ONE batched ``complete`` call for all
        features that fire (batching is what makes a local model fast)."""
        firing = [i for i, ex in enumerate(many) if ex.fires]
        out = [Explanation(ex.feature, NAME, "", skipped=NEVER_FIRES) for ex in many]
        if not firing:
            return out
        chats: list[Chat] = [explainer_prompt(many[i], self.config) for i in firing]
        cfg = self.config
        replies = self.backend.complete(chats, max_tokens=cfg.max_reply_tokens, temperature=cfg.temperature,
                                        seed=cfg.seed)  # fmt: skip
        if len(replies) != len(chats):
            raise ValueError(f"Backend {self.backend.name!r} returned {len(replies)} replies for {len(chats)} chats")
        for i, chat, raw in zip(firing, chats, replies, strict=True):
            text = clean_reply(raw, cfg.max_words)
            why = unusable_reason(text, chat[-1]["content"])
            if why:
                quoted = raw if len(raw) <= 200 else raw[:200] + "…"
                out[i] = Explanation(many[i].feature, NAME, "", skipped=f"{UNUSABLE}: {why}; it replied {quoted!r}")
            else:
                out[i] = Explanation(many[i].feature, NAME, text)
        return out
