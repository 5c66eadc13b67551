"""saelab.viz.style: one colour per dataset category and per SAE, and tokens whose whitespace
stays visible."""

from __future__ import annotations

import pytest

from saelab import viz
from saelab.data import CATEGORIES
from saelab.viz.style import CATEGORY_COLORS, category_color, sae_colors
from tests.viz._helpers import SAES


def test_every_dataset_category_has_its_own_colour():
    assert set(CATEGORY_COLORS) == set(CATEGORIES)
    assert len(set(CATEGORY_COLORS.values())) == len(CATEGORIES)
    assert category_color("math") == CATEGORY_COLORS["math"]
    # An unknown category gets a colour, the same one every time.
    assert category_color("legal") == category_color("legal")


def test_sae_colours_follow_the_given_order():
    colors = sae_colors(SAES)
    assert list(colors) == SAES
    assert len(set(colors.values())) == 4
    assert sae_colors([]) == {}


@pytest.mark.parametrize(
    ("token", "shown"),
    [("\n", "⏎"), (" the", " the"), ("\t", "⇥"), (" ", "␣"), ("  ", "␣␣"), ("", "∅"), ("x\ny", "x⏎y")],
)
def test_visible_token(token, shown):
    assert viz.visible_token(token) == shown


def test_visible_token_can_mark_every_space():
    assert viz.visible_token(" the cat", mark_spaces=True) == "␣the␣cat"
