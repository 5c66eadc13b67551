"""Sampling and scoring arm rows: the arms of a prompt share random numbers, a prompting row
continues the instructed prompt but is scored on the user's, and every row is scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saelab.interventions.arm_runs import ArmRunner, Sampling
from saelab.interventions.arms import NO_EDIT, Arm, ArmTools
from saelab.interventions.diffmean import diffmean_vectors
from saelab.interventions.feature_scale import FeatureStats
from tests.interventions._helpers import LABELS, TEXTS, private_cache, tiny_probe

HOOK = "blocks.2.hook_resid_pre"
PROMPTS = ["I think that", "Yesterday we went to the shop and", "The plan is"]
INSTRUCTION = "Write Python code."
SAMPLING = Sampling(max_new_tokens=4, temperature=1.0, seed=0)


@pytest.fixture(scope="module")
def setup(tiny_model, make_sae, tmp_path_factory):
    with private_cache(tmp_path_factory):
        d = tiny_model.cfg.d_model
        probe = tiny_probe(tiny_model, make_sae)
        tools = ArmTools(
            saes={HOOK: make_sae(d, 16, HOOK, seed=5)},
            stats={HOOK: FeatureStats(torch.full((16,), 3.0), torch.zeros(16), torch.zeros(16), n_texts=1, n_tokens=1)},
            diffmean=diffmean_vectors(tiny_model, [HOOK], TEXTS, LABELS, progress=False),
            instructions={"python": INSTRUCTION},
        )  # fmt: skip
        yield tools, probe


def _runner(model, setup, texts=PROMPTS) -> ArmRunner:
    tools, probe = setup
    return ArmRunner(model, tools, probe, list(texts), SAMPLING, progress=False)


ARMS = [Arm("sae", "", HOOK, 3, 30.0), Arm("diffmean", "python", HOOK, -1, 2.0), Arm("prompting", "python")]


def test_baseline_rows_do_not_depend_on_the_other_rows_of_the_batch(tiny_model, setup):
    runner = _runner(tiny_model, setup)
    alone = runner([(1, 0, NO_EDIT)], "select")
    crowded = runner([(p, k, a) for p in (0, 1, 2) for k in (0, 1) for a in [NO_EDIT, *ARMS]], "select")
    base = crowded[(crowded["method"] == "none") & (crowded["prompt_index"] == 1) & (crowded["sample"] == 0)]
    assert base["text"].tolist() == alone["text"].tolist()
    np.testing.assert_allclose(base["perplexity"].to_numpy(), alone["perplexity"].to_numpy(), rtol=1e-4)
    # The edits do change the text (same random numbers, different model).
    steered = crowded[crowded["method"].isin(["sae", "diffmean"])]
    baseline = crowded[crowded["method"] == "none"].set_index(["prompt_index", "sample"])["text"]
    assert any(t != baseline[(p, k)] for p, k, t in steered[["prompt_index", "sample", "text"]].itertuples(False))


def test_a_prompting_row_continues_the_instructed_prompt_and_is_scored_on_the_users(tiny_model, setup):
    runner = _runner(tiny_model, setup)
    rows = runner([(1, 0, NO_EDIT), (1, 0, Arm("prompting", "python"))], "report")
    assert rows["text"].iloc[0] != rows["text"].iloc[1]
    # The baseline of the instructed prompt, with the same (prompt, sample) random numbers.
    instructed = _runner(tiny_model, setup, [f"{INSTRUCTION}\n{p}" for p in PROMPTS])
    same = instructed([(1, 0, NO_EDIT)], "report")
    assert same["text"].iloc[0] == rows["text"].iloc[1]
    # ... but it is scored as a continuation of the user's prompt, not of the instruction.
    assert same["perplexity"].iloc[0] != pytest.approx(rows["perplexity"].iloc[1], rel=1e-3)


def test_every_row_is_scored(tiny_model, setup):
    runner = _runner(tiny_model, setup)
    plan = [(p, 0, a) for p in (0, 2) for a in [NO_EDIT, *ARMS]]
    rows = runner(plan, "select")
    assert len(rows) == len(plan) and (rows["split"] == "select").all()
    assert rows["method"].tolist() == [a.method for _, _, a in plan]
    assert rows["prompt_index"].tolist() == [p for p, _, _ in plan]
    assert rows["target"].tolist() == [a.concept for _, _, a in plan]
    assert {"perplexity", "relevance", "distinct2", "p_python", "p_non_english"} <= set(rows.columns)
    assert (rows["perplexity"] > 0).all() and np.isfinite(rows["relevance"]).all()
    assert rows["distinct2"].dropna().between(0, 1).all()
    visible = rows["text"].str.strip().str.len() > 0
    total = rows["p_python"] + rows["p_non_english"]
    np.testing.assert_allclose(total[visible], 1.0, rtol=1e-5)
    assert (total[~visible] == 0).all()


def test_an_empty_plan_gives_an_empty_table(tiny_model, setup):
    rows = _runner(tiny_model, setup)([], "select")
    assert rows.empty and {"text", "perplexity", "p_python"} <= set(rows.columns)


def test_bad_runs_are_refused(tiny_model, setup):
    with pytest.raises(ValueError, match="no prompts"):
        _runner(tiny_model, setup, [])
    with pytest.raises(ValueError, match="empty"):
        _runner(tiny_model, setup, ["fine", "  "])
    long = "word " * (tiny_model.cfg.n_ctx - 2)  # fits the context, but not with 4 new tokens
    with pytest.raises(ValueError, match=r"prompts \[1\] are longer than the context"):
        _runner(tiny_model, setup, ["fine", long])
    with pytest.raises(ValueError, match="no instruction for 'math'"):
        _runner(tiny_model, setup)([(0, 0, Arm("prompting", "math"))], "select")
