"""SAE steering beside DiffMean, prompting, a random feature and no edit, end to end on the
tiny model: one row per (category, method), chosen on one half of the prompts and reported
on the other; suppression in the same shape; bad input refused with a clear error."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest

from saelab.interventions.method_comparison import ComparisonConfig, compare_steering_methods
from tests.interventions._helpers import LABELS, TEXTS, private_cache, tiny_probe

comparison_module = importlib.import_module("saelab.interventions.method_comparison")

PROMPTS = ["I think that", "Yesterday we", "The plan is", "She said"]
STEERING_HOOKS = ("blocks.2.hook_resid_pre", "blocks.7.hook_resid_pre")
INVITING = {"python": ["Write a Python function that", "import numpy as np\n"],
            "non_english": ["Traduis en français :", "Bonjour, je"]}  # fmt: skip
CONFIG = ComparisonConfig(strengths=(4.0,), diffmean_strengths=(0.5,), screen_top=2, n_bootstrap=50,
                          report_samples=1, max_new_tokens=3)  # fmt: skip
METHODS = ["none", "sae", "diffmean", "prompting", "random"]


@pytest.fixture(scope="module")
def setup(tiny_model, make_sae, tmp_path_factory):
    with private_cache(tmp_path_factory):
        d = tiny_model.cfg.d_model
        probe = tiny_probe(tiny_model, make_sae)
        saes = {probe.hook: probe.sae, **{h: make_sae(d, 16, h, seed=5 + i) for i, h in enumerate(STEERING_HOOKS)}}
        yield saes, probe


@pytest.fixture(scope="module")
def result(tiny_model, setup):
    saes, probe = setup
    return compare_steering_methods(tiny_model, saes, probe, TEXTS, LABELS, PROMPTS, config=CONFIG,
                                    suppression_prompts=INVITING, progress=False)  # fmt: skip


def _run(model, setup, **changes):
    saes, probe = setup
    args = {"texts": TEXTS, "labels": LABELS, "prompts": PROMPTS, "config": CONFIG, "progress": False, **changes}
    return compare_steering_methods(model, saes, probe, **args)


def test_one_row_per_category_and_method(result):
    table = result.table
    assert list(zip(table["category"], table["method"], strict=True)) == [
        (c, m) for c in ("python", "non_english") for m in METHODS
    ]
    assert {"gain", "gain_lo", "gain_hi", "perplexity_ratio", "distinct_ratio", "relevance_steered", "passed",
            "qualified", "arm"} <= set(table.columns)  # fmt: skip
    none = table[table["method"] == "none"]
    assert (none["gain"] == 0).all() and (none["perplexity_ratio"] == 1).all() and not none["passed"].any()
    assert (table["n_prompts"] == 2).all()
    assert result.config is CONFIG


def test_save_writes_every_frame_and_the_config(result, tmp_path):
    folder = result.save(tmp_path / "run")
    assert {p.name for p in folder.iterdir()} == {"table.csv", "suppression.csv", "candidates.csv", "select.csv",
                                                 "scores.csv", "counts.csv", "config.json"}  # fmt: skip
    table = pd.read_csv(folder / "table.csv")
    assert table[["category", "method"]].values.tolist() == result.table[["category", "method"]].values.tolist()
    assert pd.read_csv(folder / "scores.csv")["text"].fillna("").tolist() == result.scores["text"].tolist()
    assert ComparisonConfig.from_json((folder / "config.json").read_text()) == result.config


def test_the_report_half_is_prompts_the_choice_never_saw(result):
    scores = result.scores
    select = set(scores.loc[scores["split"] == "select", "prompt_index"])
    report = set(scores.loc[scores["split"] == "report", "prompt_index"])
    assert select.isdisjoint(report) and select | report == set(range(len(PROMPTS)))
    assert len(select) == len(report) == 2
    # Every arm the select half tried, for each category: its summary, one of them chosen per method.
    chosen = result.select.groupby(["category", "method"])["chosen"].sum()
    assert (chosen == 1).all() and set(chosen.index.get_level_values("method")) == {"sae", "diffmean", "prompting"}


def test_the_sae_arm_comes_from_the_candidates_and_the_random_arm_matches_it(result):
    table, candidates = result.table.set_index(["category", "method"]), result.candidates
    for category in ("python", "non_english"):
        sae, random = table.loc[(category, "sae")], table.loc[(category, "random")]
        mine = candidates[candidates["category"] == category]
        assert sae["hook"] in STEERING_HOOKS and sae["strength"] == 4.0
        assert (sae["hook"], sae["feature"]) in set(
            zip(mine.loc[mine["chosen"], "hook"], mine.loc[mine["chosen"], "feature"], strict=True)
        )
        assert random["hook"] == sae["hook"] and random["strength"] == sae["strength"]
        assert random["feature"] != sae["feature"] and random["feature"] not in set(mine["feature"])
        assert table.loc[(category, "diffmean"), "hook"] in STEERING_HOOKS
        assert table.loc[(category, "diffmean"), "strength"] == 0.5
    # Candidates: the best specialist (by AUROC) and the best output score of each category.
    for _, mine in candidates.groupby("category"):
        assert mine.loc[mine["auroc"].idxmax(), "chosen"] and mine.loc[mine["output_score"].idxmax(), "chosen"]
        assert set(mine["hook"]) <= set(STEERING_HOOKS)


def test_counts_and_the_suppression_table(result):
    counts = result.counts()
    assert counts.index.tolist() == ["steering", "suppression"] and counts.columns.tolist() == METHODS
    assert counts.loc["suppression", ["none", "prompting", "random"]].isna().all()
    assert counts.loc["steering", "sae"] == result.n_passed("sae")
    supp = result.suppression
    assert list(zip(supp["category"], supp["method"], strict=True)) == [
        (c, m) for c in ("python", "non_english") for m in ("none", "sae", "diffmean")
    ]
    assert (supp.loc[supp["method"] == "none", "strength"] == 0).all()
    assert (supp.loc[supp["method"] != "none", "strength"] < 0).all()
    steering = result.table.set_index(["category", "method"])
    for category in ("python", "non_english"):
        row = supp[(supp["category"] == category) & (supp["method"] == "sae")].iloc[0]
        assert (row["hook"], row["feature"]) == tuple(steering.loc[(category, "sae"), ["hook", "feature"]])
    splits = set(result.scores["split"])
    assert {"suppress-select", "suppress-report"} <= splits


def test_bad_comparisons_are_refused(tiny_model, setup):
    with pytest.raises(ValueError, match=r"does not know the categories \['nope'\]"):
        _run(tiny_model, setup, categories=["nope"])
    with pytest.raises(ValueError, match="not in the profile's SAEs"):
        _run(tiny_model, setup, config=ComparisonConfig(hooks=("blocks.9.hook_resid_pre",)))
    with pytest.raises(ValueError, match="at least 2 prompts"):
        _run(tiny_model, setup, prompts=PROMPTS[:1])
    probe = setup[1]
    with pytest.raises(ValueError, match="no steering hook"):
        compare_steering_methods(tiny_model, {probe.hook: probe.sae}, probe, TEXTS, LABELS, PROMPTS, progress=False)
    with pytest.raises(ValueError, match="longer than the context"):
        _run(tiny_model, setup, prompts=[*PROMPTS, "word " * (tiny_model.cfg.n_ctx - 2)], categories=["python"])
    with pytest.raises(ValueError, match=r"at least 2 inviting prompts per category; \['non_english'\]"):
        _run(tiny_model, setup, suppression_prompts={"python": INVITING["python"], "non_english": ["Bonjour"]})


@pytest.mark.parametrize(
    "changes",
    [{"strengths": ()}, {"strengths": (2.0, -1.0)}, {"diffmean_strengths": (0.0,)}, {"max_new_tokens": 0},
     {"screen_top": 0}, {"specialists": 0, "n_output": 0}, {"specialists": -1}],
)  # fmt: skip
def test_bad_configs_are_refused(changes):
    with pytest.raises(ValueError):
        ComparisonConfig(**changes)


def test_a_config_without_bootstrap_is_refused():
    with pytest.raises(ValueError, match="n_bootstrap"):
        ComparisonConfig(n_bootstrap=0)


def test_a_category_with_one_labelled_text_is_refused_clearly(tiny_model, setup):
    one_french = len(TEXTS) - 5
    with pytest.raises(ValueError, match="at least 2 texts of 'non_english'"):
        _run(tiny_model, setup, texts=TEXTS[:one_french], labels=LABELS[:one_french])


def test_bad_suppression_prompts_are_refused_before_any_work(tiny_model, setup, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("bad input should be refused before any forward pass")

    monkeypatch.setattr(comparison_module, "feature_stats", no_work)
    with pytest.raises(ValueError, match="at least 2 inviting prompts"):
        _run(tiny_model, setup, suppression_prompts={"python": ["Write a Python function that"]})
