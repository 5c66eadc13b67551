"""The labelled dataset: seven balanced categories whose signal is not just length."""

import pandas as pd
import pytest

import saelab
from saelab.data import CATEGORIES


@pytest.fixture(scope="module")
def frame():
    return saelab.load_dataset()


def test_columns_and_categories(frame):
    assert {"text", "category"} <= set(frame.columns)
    counts = frame["category"].value_counts()
    assert set(counts.index) == set(CATEGORIES)
    assert counts.min() >= 20
    assert frame["text"].str.strip().str.len().gt(0).all()
    assert frame["text"].is_unique


def test_lengths_vary_within_every_category(frame):
    words = frame["text"].str.split().str.len()
    by_cat = words.groupby(frame["category"])
    # Every category spans short and long texts ...
    assert (by_cat.min() <= 15).all() and (by_cat.max() >= 60).all()
    # ... so length alone does a poor job of telling categories apart: a nearest-median
    # classifier on word count gets well under half right (chance is 1/7).
    medians = by_cat.median()
    guess = words.apply(lambda n: (medians - n).abs().idxmin())
    assert (guess == frame["category"]).mean() < 0.4


def test_category_subset_keeps_order():
    sub = saelab.load_dataset(categories=["math", "python"])
    assert list(pd.unique(sub["category"])) == ["math", "python"]
    with pytest.raises(ValueError, match="Unknown categories"):
        saelab.load_dataset(categories=["poetry"])


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="Labelled dataset not found"):
        saelab.load_dataset(tmp_path / "nope.jsonl")
