"""The steering sweep end to end on a tiny setup: the choice is made on one half of the prompts
and only the chosen arm and the baseline run on the other half."""

from __future__ import annotations

import pytest
import torch

from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.sweep import SweepConfig, steering_sweep, steering_table
from tests.interventions._helpers import private_cache, tiny_probe

PROMPTS = ["I think that", "Yesterday we", "The plan is", "She said"]


@pytest.fixture(scope="module")
def setup(tiny_model, make_sae, tmp_path_factory):
    with private_cache(tmp_path_factory):
        steer_sae = make_sae(tiny_model.cfg.d_model, 16, "blocks.2.hook_resid_pre", seed=5)
        probe = tiny_probe(tiny_model, make_sae)
        stats = FeatureStats(torch.full((16,), 3.0), torch.zeros(16), torch.zeros(16), n_texts=1, n_tokens=1)
        yield steer_sae, probe, stats


def test_the_sweep_chooses_on_one_half_and_reports_on_the_other(tiny_model, setup):
    sae, probe, stats = setup
    config = SweepConfig(strengths=(4.0, 30.0), max_new_tokens=3, select_samples=1, report_samples=2, n_bootstrap=50)
    result = steering_sweep(tiny_model, sae, [3, 8], PROMPTS, probe=probe, concept="python", config=config, stats=stats,
                            progress=False)  # fmt: skip
    scores = result.scores
    select, report = scores[scores.split == "select"], scores[scores.split == "report"]
    assert set(select.prompt_index).isdisjoint(report.prompt_index)
    assert len(select) == 2 * (1 + 2 * 2)  # 2 prompts x (baseline + 2 features x 2 strengths)
    chosen = (result.held_out.feature, result.held_out.strength)
    assert set(zip(report.feature, report.strength, strict=True)) == {(-1, 0.0), chosen}
    assert len(report) == 2 * 2 * 2  # 2 prompts x 2 samples x (baseline + chosen)
    assert result.curve["chosen"].sum() == 1
    assert scores["concept"].between(0, 1).all() and (scores["perplexity"] > 0).all()
    curve = result.by_strength()
    assert curve["strength"].tolist()[0] == 0.0 and set(curve["feature"]) == {-1, result.feature}
    table = steering_table([result])
    assert table.loc[0, "category"] == "python" and table.loc[0, "n_prompts"] == 2


def test_baseline_rows_of_a_prompt_are_identical_in_both_phases_of_sampling(tiny_model, setup):
    """Common random numbers: a baseline continuation depends on its (prompt, sample) only."""
    sae, probe, stats = setup
    config = SweepConfig(strengths=(4.0,), max_new_tokens=4, select_samples=1, report_samples=1, n_bootstrap=0)
    one = steering_sweep(tiny_model, sae, [3], PROMPTS[:2], probe=probe, concept="python", config=config, stats=stats,
                         progress=False)  # fmt: skip
    two = steering_sweep(tiny_model, sae, [3, 8, 9], PROMPTS[:2], probe=probe, concept="python", config=config,
                         stats=stats, progress=False)  # fmt: skip
    base = lambda r: r.scores[r.scores.feature == -1].sort_values(["prompt_index", "sample"]).text.tolist()  # noqa: E731
    assert base(one) == base(two)


def test_bad_sweeps_are_refused(tiny_model, setup):
    sae, probe, stats = setup
    with pytest.raises(ValueError, match="probe knows"):
        steering_sweep(tiny_model, sae, [3], PROMPTS, probe=probe, concept="math", stats=stats)
    with pytest.raises(ValueError, match="out of range"):
        steering_sweep(tiny_model, sae, [16], PROMPTS, probe=probe, concept="python", stats=stats)
    with pytest.raises(ValueError, match="empty"):
        steering_sweep(tiny_model, sae, [3], ["", "x"], probe=probe, concept="python", stats=stats)
