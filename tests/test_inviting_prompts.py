"""The inviting prompts of suppression experiments: every category, escapes read back, and a
clear error for a malformed file."""

from __future__ import annotations

import pytest

from saelab.data import CATEGORIES, load_inviting_prompts


def test_the_shipped_file_invites_every_category():
    prompts = load_inviting_prompts()
    assert set(prompts) == set(CATEGORIES)
    assert min(len(p) for p in prompts.values()) >= 4
    every = [p for group in prompts.values() for p in group]
    assert all(p.strip() for p in every) and len(set(every)) == len(every)
    assert not any("\\n" in p or "\t" in p for p in every)  # escapes are read back
    assert any("\n" in p for p in prompts["python"])


def _write(tmp_path, text: str):
    path = tmp_path / "inviting.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_comments_blank_lines_and_escaped_newlines(tmp_path):
    path = _write(tmp_path, "# a comment\n\npython\tdef f():\\n    return 1\nmath\tSolve\nmath\tLet x\n")
    assert load_inviting_prompts(path) == {"python": ["def f():\n    return 1"], "math": ["Solve", "Let x"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python\tfine\npython no tab\n", r"inviting\.tsv:2: expected 'category<TAB>prompt'"),
        ("python\t   \n", r":1: expected 'category<TAB>prompt'"),
        ("poetry\tRoses are\n", r":1: unknown category 'poetry'"),
        ("# only a comment\n\n", "holds no prompts"),
    ],
)
def test_a_malformed_file_is_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_inviting_prompts(_write(tmp_path, text))


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="Inviting prompts not found"):
        load_inviting_prompts(tmp_path / "absent.tsv")
