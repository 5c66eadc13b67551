"""What every notebook does before its first analysis: make the folders its figures and pages
go to, and take the labelled texts (all of them, or the first few of each category for a
``FAST`` run, which the tests and a quick look use).

    assets, outputs = saelab.output_folders(ASSETS, OUTPUTS)
    texts, labels, categories = saelab.labelled_texts(per_category=3 if FAST else None)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from saelab.data import load_dataset


class OutputFolders(NamedTuple):
    """Where a notebook writes: figures (PNG + SVG) and pages (HTML, JSON lines, trained SAEs)."""

    assets: Path
    outputs: Path


def output_folders(assets: str | Path, outputs: str | Path) -> OutputFolders:
    """The two folders as paths, created (with their parents) if missing."""
    folders = OutputFolders(Path(assets), Path(outputs))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


class LabelledTexts(NamedTuple):
    """The labelled texts as the analyses take them: parallel lists, and the categories in
    the order they first appear (the dataset's file order)."""

    texts: list[str]
    labels: list[str]
    categories: list[str]


def labelled_texts(per_category: int | None = None, *, path: str | Path | None = None) -> LabelledTexts:
    """The labelled dataset (:func:`saelab.load_dataset`), or only the first ``per_category``
    texts of each category, in file order. Every category keeps texts, so a specialist
    table still has all of them; a small slice is what ``FAST`` runs use."""
    if per_category is not None and (isinstance(per_category, bool) or not isinstance(per_category, int)
                                     or per_category < 1):
        raise ValueError(f"per_category must be a positive integer or None, got {per_category!r}")
    frame = load_dataset(path)
    if per_category is not None:
        frame = frame.groupby("category", sort=False).head(per_category).reset_index(drop=True)
    labels = frame["category"].tolist()
    return LabelledTexts(frame["text"].tolist(), labels, list(dict.fromkeys(labels)))
