"""delphi's detection and fuzzing scorers: a judge model reads an explanation and a context and
says yes or no, and we read P(yes) from its log-probabilities (never from parsed text).

- **Detection**: the plain context text. Does it contain what the explanation describes?
- **Fuzzing**: the context with some tokens marked ``<<like this>>``. In an activating context
  (label 1) the marked tokens are the ones where the feature truly fires; in a non-activating
  one (label 0) as many tokens are marked at random (seeded). Are the marked tokens examples
  of what the explanation describes? This asks the explanation to say *where* it fires too.

An explanation is scored by how well P(yes) separates the labels: balanced accuracy at
P(yes) > 0.5 and AUROC, with plain accuracy and the all-negative baseline beside them
(a judge that always says "no" gets 5/7 accuracy on 2 positives and 5 negatives, and
balanced accuracy 0.5).

Prompts are built apart from the scoring so a stronger judge gets the very same prompts; they
stay short (~100 tokens with a 24-token context) because the default judge is a 135M model
on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import numpy as np
from jaxtyping import Float, Int

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Backend, Chat, Message
from saelab.autointerp.feature_examples import Context
from saelab.autointerp.rendering import firing_marks, marked_text, plain_text, shown_window
from saelab.autointerp.scorers import metrics

Mode = Literal["detection", "fuzzing"]
MODES: tuple[str, ...] = get_args(Mode)

DETECTION_SYSTEM = "You check whether a text matches a feature description. Answer yes or no."
DETECTION_QUESTION = "Does the text contain what the feature detects? Answer yes or no."
FUZZING_SYSTEM = "You check whether marked tokens match a feature description. Answer yes or no."
FUZZING_QUESTION = "Are the tokens marked <<like this>> examples of the feature? Answer yes or no."


@dataclass(frozen=True)
class DetectionConfig(JsonConfig):
    """How contexts are shown to the judge."""

    max_context_tokens: int = 24
    """Each context is cut to at most this many tokens around its peak (short prompts for a small judge)."""
    mark_fraction: float = 0.3
    """Fuzzing marks a token of an activating context when its activation is above the feature's
    threshold and above this share of the context's peak."""
    seed: int = 0
    """Seed of the random marks in non-activating contexts (fuzzing)."""

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.max_context_tokens, int) and self.max_context_tokens >= 1):
            problems.append(f"max_context_tokens must be an integer >= 1, got {self.max_context_tokens!r}")
        if not 0.0 <= self.mark_fraction < 1.0:
            problems.append(f"mark_fraction must be in [0, 1), got {self.mark_fraction!r}")
        self.raise_problems(problems)


class DetectionScore(NamedTuple):
    """How well P(yes) separates activating from non-activating contexts (NaN when the
    explanation was empty), with the all-negative baseline for the same labels beside it."""

    balanced_accuracy: float
    """Mean of the hit rates on positives and negatives at P(yes) > 0.5; 0.5 is chance."""
    auroc: float
    """Area under the ROC curve of P(yes); 0.5 is chance."""
    accuracy: float
    """Plain share of contexts judged right at P(yes) > 0.5: read it beside ``all_negative_accuracy``."""
    all_negative_accuracy: float
    """The accuracy of a judge that always says no, on these labels."""
    n_positive: int
    n_negative: int


def explanation_language_warning(text: str) -> str:
    """A note when an explanation is mostly non-ASCII letters ("" when it is not), so a run can
    record that an English-trained judge may misread it. The explanation is scored as given."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return ""
    share = sum(not c.isascii() for c in letters) / len(letters)
    if share <= 0.5:
        return ""
    return (f"the explanation is mostly non-ASCII letters ({share:.0%} of its letters); "
            "a judge that reads mostly English may misread it")  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def detection_prompt(explanation: str, text: str) -> list[Message]:
    """The detection question for one explanation and one context's plain text."""
    user = f"Feature: {_one_line(explanation)}\nText: {text}\n{DETECTION_QUESTION}"
    return [{"role": "system", "content": DETECTION_SYSTEM}, {"role": "user", "content": user}]


def fuzzing_prompt(explanation: str, marked: str) -> list[Message]:
    """The fuzzing question for one explanation and one context with tokens marked ``<<...>>``."""
    user = f"Feature: {_one_line(explanation)}\nText: {marked}\n{FUZZING_QUESTION}"
    return [{"role": "system", "content": FUZZING_SYSTEM}, {"role": "user", "content": user}]


def fuzzing_marks(
    contexts: Sequence[Context],
    labels: Int[np.ndarray, " n_contexts"],
    *,
    threshold: float,
    config: DetectionConfig | None = None,
) -> list[tuple[bool, ...]]:
    """Which tokens fuzzing marks, over each context's shown window (:func:`.rendering.shown_window`).

    Activating contexts: the tokens whose activation is above ``threshold`` and above
    ``mark_fraction`` times the window's peak. Non-activating contexts: as many tokens chosen
    at random as the activating ones mark (their counts in turn), so the number of marks
    tells the judge nothing. The marks depend on the contexts and the seed only, so every
    explanation scored on these contexts sees the same text.
    """
    config = config or DetectionConfig()
    labels = _checked_labels(labels, len(contexts))
    shown = [shown_window(c, config.max_context_tokens).acts for c in contexts]
    positives, negatives = np.flatnonzero(labels == 1).tolist(), np.flatnonzero(labels == 0).tolist()
    marks: list[tuple[bool, ...]] = [()] * len(contexts)
    for i in positives:
        acts = shown[i]
        on = firing_marks(acts, config.mark_fraction, threshold)
        if len(acts) and not on.any():
            # The stored examples round activations to 5 decimals, which can put a barely
            # firing context's peak at the threshold; its peak token is still where it fired.
            on[int(np.argmax(acts))] = True
        marks[i] = tuple(bool(m) for m in on)
    counts = [sum(marks[i]) for i in positives] or [1]
    rng = np.random.default_rng(config.seed)
    for j, i in enumerate(negatives):
        n = len(shown[i])
        chosen = set(rng.choice(n, size=min(counts[j % len(counts)], n), replace=False).tolist()) if n else set()
        marks[i] = tuple(k in chosen for k in range(n))
    return marks


def shown_contexts(
    contexts: Sequence[Context],
    *,
    mode: Mode = "detection",
    labels: Int[np.ndarray, " n_contexts"] | None = None,
    threshold: float = 0.0,
    config: DetectionConfig | None = None,
) -> list[str]:
    """Each context's text as the judge sees it: plain (detection) or marked (fuzzing, which
    needs the labels and the feature's threshold)."""
    config = config or DetectionConfig()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    windows = [shown_window(c, config.max_context_tokens).tokens for c in contexts]
    if mode == "detection":
        return [plain_text(w) for w in windows]
    if labels is None:
        raise ValueError("Fuzzing needs the contexts' labels: activating contexts are marked where the feature fires")
    marks = fuzzing_marks(contexts, labels, threshold=threshold, config=config)
    return [marked_text(w, m) for w, m in zip(windows, marks, strict=True)]


def detection_probabilities(
    backend: Backend,
    explanations: Sequence[str],
    contexts: Sequence[Context],
    *,
    mode: Mode = "detection",
    labels: Int[np.ndarray, " n_contexts"] | None = None,
    threshold: float = 0.0,
    config: DetectionConfig | None = None,
) -> Float[np.ndarray, "n_explanations n_contexts"]:
    """P(yes) of the judge for every (explanation, context) pair, from ONE backend call.

    Several explanations (a feature's own and a shuffled one) are scored on the same contexts,
    shown the same way. An empty explanation's row is NaN and costs no call.
    """
    if isinstance(explanations, str):
        raise TypeError("explanations must be a sequence of strings, not one string")
    texts = shown_contexts(contexts, mode=mode, labels=labels, threshold=threshold, config=config)
    out = np.full((len(explanations), len(contexts)), np.nan, dtype=np.float64)
    rows = [i for i, e in enumerate(explanations) if e.strip()]
    if not rows or not contexts:
        return out
    build = detection_prompt if mode == "detection" else fuzzing_prompt
    chats: list[Chat] = [build(explanations[i], t) for i in rows for t in texts]
    p_yes = np.asarray(backend.yes_probability(chats), dtype=np.float64)
    if p_yes.shape != (len(chats),):
        raise ValueError(f"Backend {backend.name!r} gave P(yes) of shape {p_yes.shape} for {len(chats)} prompts")
    if np.any((p_yes < 0) | (p_yes > 1)):
        raise ValueError(f"Backend {backend.name!r} gave P(yes) outside [0, 1]: {p_yes[(p_yes < 0) | (p_yes > 1)]}")
    out[rows] = p_yes.reshape(len(rows), len(contexts))
    return out


def detection_score(p_yes: Float[np.ndarray, " n_contexts"], labels: Int[np.ndarray, " n_contexts"]) -> DetectionScore:
    """Balanced accuracy (at P(yes) > 0.5), AUROC and accuracy of one explanation's P(yes),
    beside the all-negative baseline; NaN scores when P(yes) has NaN (an empty explanation)."""
    p_yes = np.asarray(p_yes, dtype=np.float64)
    labels = _checked_labels(labels, len(p_yes))
    if p_yes.ndim != 1:
        raise ValueError(f"p_yes must be one row [n_contexts], got shape {p_yes.shape}")
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    baseline = metrics.all_negative(labels).accuracy
    if np.isnan(p_yes).any():
        return DetectionScore(float("nan"), float("nan"), float("nan"), baseline, n_pos, n_neg)
    predicted = (p_yes > 0.5).astype(np.int64)
    return DetectionScore(
        balanced_accuracy=float(metrics.balanced_accuracy(labels, predicted)),
        auroc=float(metrics.auroc(labels, p_yes)),
        accuracy=float(metrics.accuracy(labels, predicted)),
        all_negative_accuracy=baseline,
        n_positive=n_pos,
        n_negative=n_neg,
    )


def _checked_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"Expected {n} labels (one per context), got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"Labels must be 0 (non-activating) or 1 (activating), got {np.unique(labels)}")
    return labels.astype(np.int64)
