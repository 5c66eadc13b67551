"""Lineages through depth: planted decoders and activations with known persist / split /
merge / birth / death structure give exactly those events, lineages and specialist paths,
while the null draw gives next to none of the links."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab.evolution import specialist_lineages, trace_lineages
from saelab.evolution.events import EVENTS, count_events, links_between
from saelab.evolution.lineages import LineageConfig, Lineages
from saelab.evolution.matching import Similarities, match_features, matches_from, similarities
from tests.evolution._lineage_helpers import (
    HOOKS,
    N_PERSIST,
    per_token_from_dense,
    planted_activations,
    planted_decoders,
)


@pytest.fixture(scope="module")
def planted() -> tuple[Lineages, dict]:
    decoders, key = planted_decoders()
    return trace_lineages(decoders, method="decoder", progress=False), key


def _counts(lineages: Lineages, pair: int, column: str = "count") -> dict[str, int]:
    hook_a = lineages.hooks[pair]
    rows = lineages.events[lineages.events["hook_a"] == hook_a]
    return dict(zip(rows["event"], rows[column].astype(int), strict=True))


def test_planted_events_are_counted_exactly(planted):
    lineages, _ = planted
    assert list(lineages.events["event"].unique()) == list(EVENTS)
    assert _counts(lineages, 0) == {"persist": N_PERSIST, "split": 1, "merge": 1, "birth": 3, "death": 2}
    assert _counts(lineages, 1) == {"persist": 106, "split": 0, "merge": 0, "birth": 0, "death": 0}


def test_the_null_gives_next_to_no_links(planted):
    lineages, _ = planted
    for pair in (0, 1):
        null = _counts(lineages, pair, "null_count")
        n_a = lineages.n_features[lineages.hooks[pair]]
        assert null["persist"] + null["split"] + null["merge"] <= 0.05 * n_a
        assert null["death"] >= 0.9 * n_a


def test_links_carry_the_planted_pairs_and_their_events(planted):
    lineages, key = planted
    first = lineages.links[lineages.links["hook_a"] == HOOKS[0]]
    pairs = set(zip(first["feature_a"], first["feature_b"], strict=True))
    assert {(i, i) for i in range(N_PERSIST)} <= pairs
    assert {(key["split"], c) for c in key["children"]} <= pairs
    assert {(m, key["merged"]) for m in key["merge"]} <= pairs
    assert len(pairs) == N_PERSIST + 4
    events = dict(zip(zip(first["feature_a"], first["feature_b"], strict=True), first["event"], strict=True))
    assert events[(0, 0)] == "persist"
    assert events[(key["split"], key["children"][0])] == "split"
    assert events[(key["merge"][0], key["merged"])] == "merge"
    split = first[first["feature_a"] == key["split"]]
    np.testing.assert_allclose(split["similarity"], np.cos(np.deg2rad(40.0)), atol=1e-5)


def test_lineage_of_follows_descendants_and_ancestors(planted):
    lineages, key = planted
    perm = key["perm"]
    down = lineages.lineage_of(HOOKS[0], key["split"])
    assert list(down.columns) == ["hook", "feature", "step", "parent", "similarity"]
    by_hook = down.groupby("hook")["feature"].apply(sorted).to_dict()
    assert by_hook == {HOOKS[0]: [key["split"]], HOOKS[1]: list(key["children"]),
                       HOOKS[2]: sorted(int(perm[c]) for c in key["children"])}  # fmt: skip
    assert np.isnan(down.loc[down["step"] == 0, "similarity"]).all()
    up = lineages.lineage_of(HOOKS[1], key["merged"])
    assert sorted(up.loc[up["step"] == -1, "feature"]) == list(key["merge"])
    assert up.loc[up["step"] == 1, "feature"].tolist() == [int(perm[key["merged"]])]
    assert lineages.hooks_reached(HOOKS[0], 0) == HOOKS
    assert lineages.hooks_reached(HOOKS[0], key["dead"][0]) == (HOOKS[0],)
    assert lineages.hooks_reached(HOOKS[1], key["born"][0]) == HOOKS[1:]
    links = lineages.lineage_links(HOOKS[0], key["split"])
    assert len(links) == 4 and set(links["hook_a"]) == set(HOOKS[:2])


def test_lineage_ids_are_connected_components(planted):
    lineages, key = planted
    perm = key["perm"]
    assert len(lineages.lineage) == sum(lineages.n_features.values()) == 105 + 106 + 106
    ids = {
        lineages.lineage_id(HOOKS[0], 7),
        lineages.lineage_id(HOOKS[1], 7),
        lineages.lineage_id(HOOKS[2], int(perm[7])),
    }
    assert len(ids) == 1
    family = lineages.lineage_id(HOOKS[0], key["merge"][0])
    assert lineages.lineage_id(HOOKS[0], key["merge"][1]) == family == lineages.lineage_id(HOOKS[1], key["merged"])
    assert lineages.lineage_id(HOOKS[0], 7) != lineages.lineage_id(HOOKS[0], 8)
    dead = lineages.lineage_id(HOOKS[0], key["dead"][0])
    assert (lineages.lineage["lineage"] == dead).sum() == 1
    # 100 persisting chains + the split family + the merge family + 2 dead + 3 born.
    assert lineages.lineage["lineage"].nunique() == N_PERSIST + 1 + 1 + 2 + 3


def test_summary_reports_matched_shares_beside_the_null_rate(planted):
    lineages, _ = planted
    table = lineages.summary()
    assert list(table["hook_a"]) == list(HOOKS[:2])
    assert table.loc[0, "matched_share_a"] == pytest.approx(103 / 105)  # all but the two that die
    assert table.loc[0, "matched_share_b"] == pytest.approx(103 / 106)  # all but the three born
    assert table.loc[1, "matched_share_a"] == pytest.approx(1.0)
    assert (table[["null_rate_a", "null_rate_b"]] < 0.1).all().all()


def test_matches_are_kept_both_ways(planted):
    lineages, key = planted
    assert set(lineages.matches) == {
        (HOOKS[0], HOOKS[1]),
        (HOOKS[1], HOOKS[0]),
        (HOOKS[1], HOOKS[2]),
        (HOOKS[2], HOOKS[1]),
    }
    back = lineages.matches[(HOOKS[1], HOOKS[0])]
    assert len(back.best) == 106 and len(back.best_b) == 105
    assert back.best.loc[key["children"][1], "best_match"] == key["split"]
    assert not back.best.loc[list(key["born"]), "matched"].any()


@pytest.mark.parametrize("method", ["decoder", "hungarian"])
def test_back_matches_equal_matching_the_transposed_similarity(method):
    """The back matches are built from the forward pass; they must be what matches_from gives
    on the transposed similarity and nulls."""
    decoders, _ = planted_decoders()
    lineages = trace_lineages(dict(list(decoders.items())[:2]), method=method, on="decoder", progress=False)
    sims = similarities(decoders[HOOKS[0]], decoders[HOOKS[1]], "decoder", seed=0)
    flipped = Similarities("decoder", sims.real.T, sims.null.T, sims.null_check.T, 0)
    expected = matches_from(flipped, one_to_one=method == "hungarian", top=1)
    back = lineages.matches[(HOOKS[1], HOOKS[0])]
    assert back.threshold == pytest.approx(expected.threshold) and back.null_rate == pytest.approx(expected.null_rate)
    for got, want in ((back.best, expected.best), (back.best_b, expected.best_b)):
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # Sorted on every column: rows that tie on feature_a may come out in any order.
    keys = list(expected.pairs.columns)
    pd.testing.assert_frame_equal(
        back.pairs.sort_values(keys, ignore_index=True)[keys],
        expected.pairs.sort_values(keys, ignore_index=True),
        check_dtype=False,
    )
    as_null = Similarities("decoder", sims.null_check, sims.null, sims.null, 0)
    null = matches_from(as_null, one_to_one=method == "hungarian", top=1)
    assert _counts(lineages, 0, "null_count") == count_events(links_between(null), 105, 106)


def test_permuted_noisy_copies_are_recovered_and_the_rest_are_born_or_die():
    gen = torch.Generator().manual_seed(3)
    d, n_shared, n_fresh = 128, 150, 50
    a = torch.randn(n_shared + n_fresh, d, generator=gen)
    a = a / a.norm(dim=1, keepdim=True)
    perm = torch.randperm(n_shared + n_fresh, generator=gen)
    b = torch.empty_like(a)
    b[perm[:n_shared]] = a[:n_shared] + 0.04 * torch.randn(n_shared, d, generator=gen)
    b[perm[n_shared:]] = torch.randn(n_fresh, d, generator=gen)
    lineages = trace_lineages({HOOKS[0]: a, HOOKS[1]: b}, method="decoder", progress=False)
    found = set(zip(lineages.links["feature_a"], lineages.links["feature_b"], strict=True))
    truth = {(i, int(perm[i])) for i in range(n_shared)}
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    assert precision >= 0.95 and recall >= 0.95
    counts = _counts(lineages, 0)
    assert abs(counts["birth"] - n_fresh) <= 3 and abs(counts["death"] - n_fresh) <= 3
    assert counts["persist"] >= 0.95 * n_shared


def test_hungarian_lineages_are_one_to_one():
    decoders, _ = planted_decoders()
    lineages = trace_lineages(decoders, method="hungarian", on="decoder", progress=False)
    counts = _counts(lineages, 0)
    assert counts["split"] == counts["merge"] == 0
    assert counts["persist"] == len(lineages.links[lineages.links["hook_a"] == HOOKS[0]])
    assert lineages.config.method == "hungarian" and lineages.config.kind == "decoder"


def test_activation_lineages_find_the_planted_copies():
    samples, key = planted_activations()
    lineages = trace_lineages({h: None for h in samples}, method="activation", samples=samples, progress=False)
    assert _counts(lineages, 0) == {"persist": 25, "split": 0, "merge": 0, "birth": 5, "death": 5}
    links = set(zip(lineages.links["feature_a"], lineages.links["feature_b"], strict=True))
    assert links == {(i, int(key["perm"][i])) for i in range(25)}
    np.testing.assert_allclose(lineages.links["similarity"], 1.0, atol=1e-5)
    null = _counts(lineages, 0, "null_count")
    assert null["persist"] <= 2 and null["death"] >= 28


def test_activation_split_into_two_token_halves():
    rng = np.random.default_rng(4)
    parent = (rng.random(4000) < 0.2) * rng.exponential(1.0, 4000)
    noise = (rng.random((4000, 20)) < 0.05) * rng.exponential(1.0, (4000, 20))
    even = np.arange(4000) % 2 == 0
    h0 = np.column_stack([parent, noise])
    h1 = np.column_stack([parent * even, parent * ~even, noise])
    samples = {HOOKS[0]: per_token_from_dense(h0), HOOKS[1]: per_token_from_dense(h1)}
    lineages = trace_lineages({h: None for h in samples}, samples=samples, progress=False)
    assert _counts(lineages, 0) == {"persist": 20, "split": 1, "merge": 0, "birth": 0, "death": 0}
    assert sorted(lineages.lineage_of(HOOKS[0], 0)["feature"]) == [0, 0, 1]


def test_events_from_a_match_follow_the_documented_rules():
    decoders, key = planted_decoders()
    matches = match_features(decoders[HOOKS[0]], decoders[HOOKS[1]], method="decoder")
    links = links_between(matches)
    assert set(links["direction"]) <= {"forward", "backward", "both"}
    child = links[(links["feature_a"] == key["split"])]
    assert sorted(child["direction"]) == ["backward", "both"]  # one child is the forward best, both look back
    assert count_events(links, 105, 106)["split"] == 1


def _specialists() -> pd.DataFrame:
    rows = [
        (HOOKS[0], "math", 1, 0, 0.99, 0.001, True),
        (HOOKS[0], "math", 2, 5, 0.90, 0.01, True),
        (HOOKS[0], "urls", 1, 103, 0.95, 0.001, True),  # a feature that dies
        (HOOKS[0], "social", 1, 9, 0.70, 0.5, False),
        (HOOKS[1], "math", 1, 0, 0.98, 0.001, True),
    ]
    frame = pd.DataFrame(rows, columns=["sae", "category", "rank", "feature", "auroc", "q_value", "is_specialist"])
    return frame


def test_specialist_lineages_say_which_persist_and_stay_specialists(planted):
    lineages, key = planted
    table = specialist_lineages(lineages, _specialists(), hook=HOOKS[0])
    assert table[["category", "feature"]].values.tolist() == [["math", 0], ["urls", 103]]
    math, urls = table.iloc[0], table.iloc[1]
    assert math["persists_through_depth"] and math["hooks_reached"] == HOOKS and math["n_hooks_reached"] == 3
    assert math["same_category_hooks"] == HOOKS[:2] and not math["same_category_through_depth"]
    assert math[HOOKS[2]] == (int(key["perm"][0]),)
    assert not urls["persists_through_depth"] and urls["hooks_reached"] == (HOOKS[0],)
    assert urls[HOOKS[1]] == () and urls["same_category_hooks"] == (HOOKS[0],)
    every = specialist_lineages(lineages, _specialists(), significant_only=False, best_per_category=False)
    assert len(every) == 5 and list(every["sae"]) == [HOOKS[0]] * 4 + [HOOKS[1]]


def test_bad_input_is_refused_clearly(planted):
    lineages, _ = planted
    decoders, _ = planted_decoders()
    with pytest.raises(ValueError, match="at least 2 SAEs"):
        trace_lineages({HOOKS[0]: decoders[HOOKS[0]]}, method="decoder")
    with pytest.raises(ValueError, match="different d_in"):
        trace_lineages({HOOKS[0]: torch.randn(10, 64), HOOKS[1]: torch.randn(10, 32)}, method="decoder")
    with pytest.raises(ValueError, match="samples are used by activation"):
        trace_lineages(decoders, method="decoder", samples={})
    samples, _ = planted_activations(n_tokens=200)
    with pytest.raises(ValueError, match="need samples"):
        trace_lineages({h: None for h in samples}, method="activation")
    with pytest.raises(ValueError, match="no per-token features for"):
        trace_lineages({**{h: None for h in samples}, HOOKS[2]: None}, samples=samples)
    empty = per_token_from_dense(np.zeros((0, 30)))
    with pytest.raises(ValueError, match="hold no tokens"):
        trace_lineages({h: None for h in samples}, samples={HOOKS[0]: empty, HOOKS[1]: empty})
    with pytest.raises(ValueError, match="SAE has 12 features"):
        trace_lineages({HOOKS[0]: torch.randn(12, 8), HOOKS[1]: None}, samples=samples)
    with pytest.raises(ValueError, match="out of range"):
        lineages.lineage_of(HOOKS[0], 105)
    with pytest.raises(ValueError, match="Unknown hook"):
        lineages.lineage_id("blocks.99.hook_resid_pre", 0)
    with pytest.raises(ValueError, match="lacks columns"):
        specialist_lineages(lineages, _specialists().drop(columns="is_specialist"))
    with pytest.raises(ValueError, match="Unknown hook"):
        specialist_lineages(lineages, _specialists(), hook="nowhere")
    with pytest.raises(ValueError, match="unknown method"):
        LineageConfig(method="telepathy")
    with pytest.raises(ValueError, match="null_quantile"):
        trace_lineages(decoders, method="decoder", null_quantile=1.5)


def test_config_round_trips_through_json():
    config = LineageConfig(method="hungarian", on="decoder", null_quantile=0.95, seed=3)
    assert LineageConfig.from_json(config.to_json()) == config
