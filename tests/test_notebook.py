"""What every notebook does first: its output folders, and its slice of the labelled texts."""

from __future__ import annotations

import pytest

import saelab
from saelab.notebook import labelled_texts, output_folders


def test_output_folders_are_created_with_their_parents(tmp_path):
    assets, outputs = output_folders(tmp_path / "a" / "assets", str(tmp_path / "b" / "outputs"))
    assert assets == tmp_path / "a" / "assets" and outputs == tmp_path / "b" / "outputs"
    assert assets.is_dir() and outputs.is_dir()
    assert output_folders(assets, outputs) == (assets, outputs)  # a second call finds them


def test_labelled_texts_are_the_whole_dataset_by_default():
    frame = saelab.load_dataset()
    texts, labels, categories = labelled_texts()
    assert texts == frame["text"].tolist() and labels == frame["category"].tolist()
    assert categories == list(dict.fromkeys(frame["category"]))


def test_a_slice_keeps_the_first_texts_of_every_category_in_file_order():
    frame = saelab.load_dataset()
    whole = labelled_texts()
    sliced = labelled_texts(per_category=3)
    assert sliced.categories == whole.categories
    assert len(sliced.texts) == 3 * len(whole.categories)
    for category in whole.categories:
        first = frame.loc[frame["category"] == category, "text"].head(3).tolist()
        assert [t for t, c in zip(sliced.texts, sliced.labels, strict=True) if c == category] == first
    # Categories stay grouped as in the file, so specialist tables list them in the same order.
    assert sliced.labels == [c for c in whole.categories for _ in range(3)]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_a_slice_needs_a_positive_integer(bad):
    with pytest.raises(ValueError, match="per_category"):
        labelled_texts(per_category=bad)


def test_a_slice_reads_the_given_file(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text('{"text": "a", "category": "python"}\n{"text": "b", "category": "python"}\n'
                    '{"text": "c", "category": "urls"}\n', encoding="utf-8")
    assert labelled_texts(1, path=path) == (["a", "c"], ["python", "urls"], ["python", "urls"])
