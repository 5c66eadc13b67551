"""Source ``labelled``: a seeded, per-category share (``labelled_fraction``) of the labelled
dataset; the ids used are recorded, and the rest are never trained on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from saelab._util.paths import data_dir
from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter
from saelab.corpus.sources.files import source_rng
from saelab.data import DATASET_FILE, load_dataset


def labelled_path() -> Path:
    """The labelled dataset's file."""
    return data_dir() / DATASET_FILE


def labelled_selection(cfg: CorpusConfig) -> tuple[pd.DataFrame, set[str]]:
    """The labelled frame and the ids chosen for the mix (a seeded share of every category)."""
    frame = load_dataset()
    rng = source_rng(cfg, "labelled")
    chosen: set[str] = set()
    for _, group in frame.groupby("category", sort=True):
        ids = sorted(group["id"].astype(str))
        rng.shuffle(ids)
        chosen.update(ids[: round(cfg.labelled_fraction * len(ids))])
    return frame, chosen


def documents(cfg: CorpusConfig, filt: DocumentFilter) -> Iterator[Document] | None:
    if cfg.labelled_fraction <= 0:
        return None  # a missing file is load_dataset's FileNotFoundError, not a smaller mix
    frame, chosen = labelled_selection(cfg)
    rows = frame.loc[frame["id"].astype(str).isin(list(chosen))]
    order = list(range(len(rows)))
    source_rng(cfg, "labelled-order").shuffle(order)

    def gen() -> Iterator[Document]:
        for i in order:
            text = filt(rows["text"].iloc[i])
            if text is not None:
                yield Document(text, "labelled", str(rows["id"].iloc[i]))

    return gen()
