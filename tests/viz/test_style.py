"""saelab.viz.style: one colour per dataset category and per SAE, and tokens whose whitespace
stays visible."""

from __future__ import annotations

import pytest

from saelab import viz
from saelab.data import CATEGORIES
from tests.viz._helpers import SAES


def test_every_dataset_category_has_its_own_colour():
    assert set(viz.CATEGORY_COLORS) == set(CATEGORIES)
    assert len(set(viz.CATEGORY_COLORS.values())) == len(CATEGORIES)
    assert viz.category_color("math") == viz.CATEGORY_COLORS["math"]
    # An unknown category gets a colour, the same one every time.
    assert viz.category_color("legal") == viz.category_color("legal")


def test_sae_colours_follow_the_given_order():
    colors = viz.sae_colors(SAES)
    assert list(colors) == SAES
    assert len(set(colors.values())) == 4
    assert viz.sae_colors([]) == {}


@pytest.mark.parametrize(
    ("token", "shown"),
    [("\n", "⏎"), (" the", " the"), ("\t", "⇥"), (" ", "␣"), ("  ", "␣␣"), ("", "∅"), ("x\ny", "x⏎y")],
)
def test_visible_token(token, shown):
    assert viz.visible_token(token) == shown


def test_visible_token_can_mark_every_space():
    assert viz.visible_token(" the cat", mark_spaces=True) == "␣the␣cat"
