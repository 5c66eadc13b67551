"""Characteristic tokens: a token every text of one category has and no other text has comes
first; ``min_texts`` keeps a token seen in too few texts out."""

from __future__ import annotations

import math

import pytest

from saelab.interventions.concept_tokens import concept_tokens

ZOO = ["the zebra runs", "a zebra sleeps", "my zebra eats", "one zebra and a walrus"]
FARM = ["the dog runs to a barn", "a cat sleeps in our barn", "my cow eats", "one hen"]
TEXTS = ZOO + FARM
LABELS = ["zoo"] * len(ZOO) + ["farm"] * len(FARM)


def _token_id(model, text: str) -> int:
    (token,) = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return token


def test_a_token_only_one_category_has_ranks_first(tiny_model):
    tokens = concept_tokens(tiny_model, TEXTS, LABELS, min_texts=1)
    assert tokens.categories == ["zoo", "farm"]
    zebra = _token_id(tiny_model, " zebra")
    zoo = tokens.table[tokens.table["category"] == "zoo"].reset_index(drop=True)
    assert zoo.loc[0, "token_id"] == zebra and zoo.loc[0, "token"] == " zebra" and zoo.loc[0, "texts"] == 4
    # Smoothed log-ratio of document frequencies: in 4 of 4 zoo texts, in 0 of 4 others.
    assert zoo.loc[0, "log_ratio"] == pytest.approx(math.log(4.5 / 5) - math.log(0.5 / 5))
    assert zoo["rank"].tolist() == list(range(len(zoo)))
    assert zoo["log_ratio"].is_monotonic_decreasing
    assert tokens.ids("zoo")[0].item() == zebra and tokens.ids("zoo").tolist() == zoo["token_id"].tolist()
    assert _token_id(tiny_model, " barn") == tokens.ids("farm")[0].item()


def test_a_token_in_too_few_texts_is_left_out(tiny_model):
    walrus = tiny_model.tokenizer(" walrus", add_special_tokens=False)["input_ids"]
    loose = concept_tokens(tiny_model, TEXTS, LABELS, min_texts=1).ids("zoo").tolist()
    strict = concept_tokens(tiny_model, TEXTS, LABELS, min_texts=2).ids("zoo").tolist()
    assert set(walrus) <= set(loose)
    assert not set(walrus) & set(strict)
    assert strict == [_token_id(tiny_model, " zebra")]  # the only zoo token in 2+ zoo texts
    assert len(concept_tokens(tiny_model, TEXTS, LABELS, min_texts=1, top=1).table) == 2  # one per category


def test_bad_input_is_refused(tiny_model):
    with pytest.raises(ValueError, match="at least two categories"):
        concept_tokens(tiny_model, ZOO, ["zoo"] * len(ZOO), min_texts=1)
    with pytest.raises(ValueError, match="labels"):
        concept_tokens(tiny_model, TEXTS, LABELS[:-1])
    with pytest.raises(ValueError, match=r"\['farm'\].*lower min_texts"):
        concept_tokens(tiny_model, TEXTS, LABELS, min_texts=3)  # no farm token is in 3 farm texts
    tokens = concept_tokens(tiny_model, TEXTS, LABELS, min_texts=1)
    with pytest.raises(ValueError, match="no characteristic tokens for 'nope'"):
        tokens.ids("nope")
