"""The labelled 7-category text dataset (see data/README.md for provenance)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from saelab._util.paths import data_dir

CATEGORIES: tuple[str, ...] = (
    "python",
    "urls",
    "math",
    "non_english",
    "social",
    "formal",
    "conversational",
)
DATASET_FILE = "labelled_texts.jsonl"


def load_dataset(path: str | Path | None = None, *, categories: Sequence[str] | None = None) -> pd.DataFrame:
    """The labelled texts as a DataFrame with columns ``id, category, text, length_bucket``.

    Rows keep file order (grouped by category). ``categories`` selects a subset, in that order.
    """
    path = Path(path) if path is not None else data_dir() / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Labelled dataset not found at {path}.")
    frame = pd.read_json(path, lines=True, dtype={"id": str, "category": str, "text": str})
    missing = {"text", "category"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    unknown = set(frame["category"]) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"{path} has unknown categories {sorted(unknown)}; valid: {list(CATEGORIES)}")
    if categories is not None:
        bad = [c for c in categories if c not in CATEGORIES]
        if bad:
            raise ValueError(f"Unknown categories {bad}; valid: {list(CATEGORIES)}")
        frame = pd.concat([frame.loc[frame["category"] == c] for c in categories], ignore_index=True)
    return frame.reset_index(drop=True)


STEERING_PROMPTS_FILE = "steering_prompts.txt"


def load_steering_prompts(path: str | Path | None = None) -> list[str]:
    """Neutral prompts for steering experiments (``data/steering_prompts.txt``): one per line,
    ``#`` lines are comments. None asks for a dataset category, so a category that appears in
    a steered continuation came from the steering."""
    path = Path(path) if path is not None else data_dir() / STEERING_PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Steering prompts not found at {path}.")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


INVITING_PROMPTS_FILE = "inviting_prompts.tsv"


def load_inviting_prompts(path: str | Path | None = None) -> dict[str, list[str]]:
    """Prompts that invite each category (``data/inviting_prompts.tsv``: ``category<TAB>prompt``
    per line, ``#`` lines are comments, ``\\n`` is a newline), for suppression experiments."""
    path = Path(path) if path is not None else data_dir() / INVITING_PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Inviting prompts not found at {path}.")
    out: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        category, sep, prompt = line.partition("\t")
        if not sep or not prompt.strip():
            raise ValueError(f"{path}:{number}: expected 'category<TAB>prompt', got {line!r}")
        if category not in CATEGORIES:
            raise ValueError(f"{path}:{number}: unknown category {category!r}; valid: {list(CATEGORIES)}")
        out.setdefault(category, []).append(prompt.replace("\\n", "\n"))
    if not out:
        raise ValueError(f"{path} holds no prompts")
    return out
