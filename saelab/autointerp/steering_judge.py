"""An optional LLM judge of steered text, after AxBench (Wu et al. 2025).

AxBench rates each steered continuation with a chat model on three 0-2 scales and combines
them by harmonic mean, so a continuation scores well only when it is good on all three:

* **concept**: does the text incorporate the concept it was steered towards?
* **instruction**: is it related to the prompt it continues (an instruction or a text start)?
* **fluency**: is it fluent, whatever its topic? Repetitive text is rated not fluent, which
  perplexity alone misses (see :mod:`saelab.interventions.repetition`).

The harmonic mean of ratings that include a 0 is 0 (AxBench's rule, and the limit of the
formula); it is 0 even when another rating is missing, since no value of that rating could
lift it. Otherwise a missing rating leaves it NaN.

How the rating is read, and why: the judge asks for a short explanation and then
``Rating: [[score]]``, as AxBench does (the rating follows a written rationale), and parses
the reply. Reading log-probabilities over "0", "1", "2" would need the rating to be the
reply's first token, which rules out the rationale, and the backend protocol reads
log-probabilities for yes/no only. ``explain_first=False`` asks for the digit alone, which
suits a small model. A reply that carries no rating in 0-2 is NaN and counted
(:attr:`SteeringJudge.unparsed`), never guessed.

The judge satisfies :class:`saelab.interventions.judge_protocol.ConceptJudge`, so the
steering sweep can take it without importing autointerp.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Backend, Chat
from saelab.autointerp.backends.http import BackendError
from saelab.interventions.judge_protocol import ConceptJudge

log = logging.getLogger(__name__)

RATINGS = ("concept", "instruction", "fluency")
"""The three ratings, in the order of the frame's columns."""

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "python": "Python source code",
    "math": "mathematics: equations, numbers and proofs",
    "urls": "web addresses (URLs) and links",
    "non_english": "text in a language other than English",
    "social": "a social media post, with hashtags, emoji, @handles or slang",
    "formal": "formal, official writing",
    "conversational": "casual conversational speech",
}
"""A short description of each dataset category (``saelab.data.CATEGORIES``; data/README.md
defines them): what the judge looks for, and what a prompting baseline can ask for."""

SYSTEM = "You are an impartial judge of short text fragments. You rate one quality at a time, on a scale of 0 to 2."

_RUBRICS = {
    "concept": (
        "Rate whether the fragment below incorporates the concept, ignoring grammar and coherence.\n"
        "0: the concept is absent.\n1: the concept is present, but only weakly or awkwardly.\n"
        "2: the concept is clearly present."
    ),
    "instruction": (
        "Rate whether the fragment below is related to the text it answers or continues (an instruction, "
        "or the start of a text), ignoring grammar and coherence.\n"
        "0: unrelated.\n1: loosely related.\n2: clearly related."
    ),
    "fluency": (
        "Rate the fluency of the fragment below, ignoring whether it is complete, relevant or informative.\n"
        "0: not fluent: incomprehensible or repetitive.\n1: somewhat fluent, with errors or awkward phrasing.\n"
        "2: fluent, natural text."
    ),
}
_EXPLAIN = 'Explain briefly in one or two sentences, then give your rating in exactly this format: "Rating: [[score]]".'
_DIGIT = "Answer with the rating only: a single digit, 0, 1 or 2."

_NUMBER = r"\d+(?:\.\d+)?"  # decimals too, so that "2.5" is read as off the scale, not as 2
_RATING = re.compile(r"rating\W{0,6}(" + _NUMBER + ")", re.IGNORECASE)  # "Rating: [[2]]", "rating: 1"
_ANY_NUMBER = re.compile(r"(?<![\d.])" + _NUMBER)


@dataclass(frozen=True)
class SteeringJudgeConfig(JsonConfig):
    """How the judge asks and how long it may answer."""

    explain_first: bool = True
    """Ask for a brief rationale before ``Rating: [[score]]`` (AxBench); False asks for the
    digit alone (fewer tokens; suits a small model, which rambles when asked to explain)."""
    max_tokens: int | None = None
    """Reply budget per chat; None: 200 when ``explain_first``, else 4."""
    temperature: float = 0.0
    """0: greedy, so ratings are reproducible."""
    seed: int = 0
    """Sampling seed when ``temperature`` > 0."""
    keep_replies: bool = False
    """Add the raw replies as ``concept_reply``, ``instruction_reply``, ``fluency_reply`` columns."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            problems.append(f"max_tokens must be an integer >= 1 or None, got {self.max_tokens!r}")
        if not 0.0 <= self.temperature < math.inf:
            problems.append(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        self.raise_problems(problems)

    @property
    def reply_tokens(self) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        return 200 if self.explain_first else 4


def judge_chats(prompt: str, continuation: str, description: str, config: SteeringJudgeConfig) -> list[Chat]:
    """The three chats that rate one continuation, in :data:`RATINGS` order."""
    answer = _EXPLAIN if config.explain_first else _DIGIT
    fragment = f"[Fragment start]\n{continuation}\n[Fragment end]"
    shown = {
        "concept": f"[Concept start]\n{description}\n[Concept end]\n\n{fragment}",
        "instruction": f"[Text start]\n{prompt}\n[Text end]\n\n{fragment}",
        "fluency": fragment,
    }
    return [
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"{_RUBRICS[kind]}\n\n{shown[kind]}\n\n{answer}"}]
        for kind in RATINGS
    ]  # fmt: skip


def parse_rating(reply: str) -> float:
    """The rating in a reply, 0, 1 or 2; NaN when there is none.

    The last ``Rating: [[d]]`` (or ``rating: d``) wins; without one, the reply's last number.
    A number other than 0, 1 or 2 (3, 2.5) is NaN, not clipped or rounded: the judge did not
    follow the scale."""
    numbers = _RATING.findall(reply) or _ANY_NUMBER.findall(reply)
    value = float(numbers[-1]) if numbers else math.nan
    return value if value in (0.0, 1.0, 2.0) else math.nan


def harmonic_mean(ratings: Float[np.ndarray, "n k"]) -> Float[np.ndarray, " n"]:
    """Row-wise harmonic mean of ratings in [0, 2]: 0 when any rating is 0, else NaN when
    any is missing, else ``k / sum(1 / r)``."""
    ratings = np.asarray(ratings, dtype=np.float64)
    with np.errstate(divide="ignore"):
        value = ratings.shape[1] / (1.0 / ratings).sum(axis=1)
    value[np.isnan(ratings).any(axis=1)] = np.nan
    value[(ratings == 0).any(axis=1)] = 0.0
    return value


class SteeringJudge:
    """Rates steered continuations with a chat model, AxBench style."""

    def __init__(
        self,
        backend: Backend,
        config: SteeringJudgeConfig | None = None,
        *,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        """``descriptions`` maps each concept name that :meth:`rate` accepts to what the judge
        looks for (default :data:`CATEGORY_DESCRIPTIONS`, the dataset's categories)."""
        if not callable(getattr(backend, "complete", None)):
            raise TypeError(f"backend must answer chats with .complete(chats, ...), got {type(backend).__name__}")
        self.backend = backend
        self.config = config or SteeringJudgeConfig()
        self.descriptions = dict(CATEGORY_DESCRIPTIONS if descriptions is None else descriptions)
        bad = [k for k, v in self.descriptions.items() if not (isinstance(v, str) and v.strip())]
        if bad or not self.descriptions:
            raise ValueError(f"descriptions must map concept names to non-empty strings; bad: {bad}")
        self.unparsed = 0
        """Ratings of the last :meth:`rate` call with no usable answer (NaN)."""
        self.unparsed_total = 0

    def __repr__(self) -> str:
        return f"SteeringJudge({getattr(self.backend, 'name', type(self.backend).__name__)!r})"

    def rate(self, prompts: Sequence[str], continuations: Sequence[str], concept: str | Sequence[str]) -> pd.DataFrame:
        """One row per continuation: ``concept``, ``instruction``, ``fluency`` in {0, 1, 2} and
        their ``harmonic`` mean, NaN where the judge gave no usable answer.

        ``concept`` is a key of :attr:`descriptions` (a dataset category by default), or one key
        per continuation. Three chats per continuation, sent as one batch. ``frame.attrs
        ["unparsed"]`` holds the number of NaN ratings."""
        texts = _texts("prompts", prompts), _texts("continuations", continuations)
        if len(texts[0]) != len(texts[1]):
            raise ValueError(f"{len(texts[0])} prompts but {len(texts[1])} continuations")
        described = self._describe(concept, len(texts[1]))
        chats = [c for p, t, d in zip(*texts, described, strict=True) for c in judge_chats(p, t, d, self.config)]
        replies = self._complete(chats) if chats else []
        ratings = np.array([parse_rating(r) for r in replies], dtype=np.float64).reshape(len(described), len(RATINGS))
        frame = pd.DataFrame(ratings, columns=list(RATINGS))
        frame["harmonic"] = harmonic_mean(ratings)
        if self.config.keep_replies:
            for k, kind in enumerate(RATINGS):
                frame[f"{kind}_reply"] = replies[k :: len(RATINGS)]
        self._count_unparsed(ratings, replies)
        frame.attrs["unparsed"] = self.unparsed
        return frame

    def _describe(self, concept: str | Sequence[str], n: int) -> list[str]:
        names = [concept] * n if isinstance(concept, str) else list(concept)
        if len(names) != n:
            raise ValueError(f"{len(names)} concepts for {n} continuations; pass one concept, or one per continuation")
        unknown = sorted({str(c) for c in names if c not in self.descriptions})
        if unknown:
            raise ValueError(
                f"Unknown concept(s) {unknown}; the judge knows {sorted(self.descriptions)}. For another "
                "concept, pass descriptions={name: 'what the text should be about'} to SteeringJudge."
            )
        return [self.descriptions[c] for c in names]

    def _complete(self, chats: list[Chat]) -> list[str]:
        cfg = self.config
        try:
            return self.backend.complete(chats, max_tokens=cfg.reply_tokens, temperature=cfg.temperature, seed=cfg.seed)
        except BackendError as err:  # say which step failed; the backend's message says where
            raise BackendError(f"The steering judge could not rate ({len(chats)} chats): {err}") from err

    def _count_unparsed(self, ratings: np.ndarray, replies: list[str]) -> None:
        missing = np.isnan(ratings.ravel())
        self.unparsed = int(missing.sum())
        self.unparsed_total += self.unparsed
        if self.unparsed:
            first = replies[int(np.argmax(missing))]
            log.warning("%d of %d ratings had no rating in 0-2 (NaN); e.g. the reply %r",
                        self.unparsed, missing.size, first[:200])  # fmt: skip


def _texts(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(values).__name__}")
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name} must be strings; item {bad[0]} is {type(values[bad[0]]).__name__}")
    return list(values)


def _as_concept_judge(judge: SteeringJudge) -> ConceptJudge:
    """Never called: pyright checks here that the judge fits the sweep's protocol."""
    return judge
