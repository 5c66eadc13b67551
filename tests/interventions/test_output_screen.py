"""Output screens on planted decoders: a feature whose decoder row is token t's unembedding
direction tops the logit-lens screen for {t} and raises P(t) when added."""

from __future__ import annotations

import importlib

import pytest
import torch

from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.generation import prompt_ids
from saelab.interventions.output_screen import logit_lens_screen, output_scores, vector_output_scores

# The module, not the function of the same name that saelab.interventions exports.
scores_module = importlib.import_module("saelab.interventions.output_screen")

HOOK = "blocks.27.hook_resid_pre"
D_SAE = 16
RAISES, LOWERS, RAISES_OTHER = 5, 9, 2
TOKEN, OTHER = 1234, 4321
PROMPTS = ["I think that", "Yesterday we went to the shop and", "The plan is"]


@pytest.fixture(scope="module")
def planted(tiny_model, make_sae):
    """An SAE whose feature 5 writes token 1234's unembedding direction, 9 its opposite and
    2 token 4321's (unit rows; the tiny model's ln_final has no weight)."""
    sae = make_sae(tiny_model.cfg.d_model, D_SAE, HOOK, seed=3)
    w_u = tiny_model.W_U.detach()
    with torch.no_grad():
        for feature, column in ((RAISES, w_u[:, TOKEN]), (LOWERS, -w_u[:, TOKEN]), (RAISES_OTHER, w_u[:, OTHER])):
            sae.W_dec[feature] = column / column.norm()
    return sae


@pytest.fixture(scope="module")
def stats():
    """Typical max 50 everywhere: strength 4 adds 200, about the tiny model's residual norm."""
    return FeatureStats(torch.full((D_SAE,), 50.0), torch.zeros(D_SAE), torch.zeros(D_SAE), n_texts=1, n_tokens=1)


@pytest.fixture(scope="module")
def prompts(tiny_model):
    return [prompt_ids(tiny_model, p) for p in PROMPTS]


def test_the_planted_feature_tops_the_logit_lens_screen(tiny_model, planted):
    sets = {"one": torch.tensor([TOKEN]), "other": torch.tensor([OTHER])}
    screen = logit_lens_screen(tiny_model, planted, sets, top=3)
    assert screen.columns.tolist() == ["category", "feature", "screen"]
    assert screen.groupby("category").size().to_dict() == {"one": 3, "other": 3}
    one = screen[screen.category == "one"].reset_index(drop=True)
    other = screen[screen.category == "other"].reset_index(drop=True)
    assert one.loc[0, "feature"] == RAISES and other.loc[0, "feature"] == RAISES_OTHER
    assert LOWERS not in one["feature"].tolist()
    assert one["screen"].is_monotonic_decreasing and one.loc[0, "screen"] > 5  # many SDs above the vocabulary
    with pytest.raises(ValueError, match="top must be at least 1"):
        logit_lens_screen(tiny_model, planted, sets, top=0)


def test_the_screen_is_the_same_in_blocks(tiny_model, planted, monkeypatch):
    sets = {"one": torch.tensor([TOKEN, OTHER])}
    whole = logit_lens_screen(tiny_model, planted, sets, top=D_SAE)
    monkeypatch.setattr(scores_module, "SCREEN_BLOCK", 3)
    blocked = logit_lens_screen(tiny_model, planted, sets, top=D_SAE)
    assert blocked["feature"].tolist() == whole["feature"].tolist()
    torch.testing.assert_close(torch.tensor(blocked["screen"].to_numpy()), torch.tensor(whole["screen"].to_numpy()))


def test_a_feature_that_writes_the_token_has_the_best_output_score(tiny_model, planted, stats, prompts):
    features = [RAISES, *range(D_SAE), LOWERS]
    table = output_scores(tiny_model, planted, features, prompts, torch.tensor([TOKEN]), stats=stats, strength=4.0)
    assert table.columns.tolist() == ["feature", "output_score", "own_score"]
    assert table["feature"].tolist() == [RAISES, *(f for f in range(D_SAE) if f != RAISES)]  # each once, in order
    best, worst = table["output_score"].idxmax(), table["output_score"].idxmin()
    assert table.loc[best, "feature"] == RAISES and table.loc[worst, "feature"] == LOWERS
    assert table.loc[best, "output_score"] > 2.0 and table.loc[worst, "output_score"] < -2.0  # nats of log P(token)
    # Arad et al.'s score reads each feature's own top logit-lens tokens, so it rises for every feature.
    assert (table["own_score"] > 0).all()


def test_a_feature_scores_as_its_decoder_vector_does(tiny_model, planted, stats, prompts, monkeypatch):
    concept = torch.tensor([TOKEN, OTHER])
    table = output_scores(tiny_model, planted, [RAISES, 7], prompts, concept, stats=stats, strength=2.0)
    vectors = planted.W_dec.detach()[[RAISES, 7]] * 100.0  # typical max 50 x strength 2
    direct = vector_output_scores(tiny_model, HOOK, vectors, prompts, concept)
    torch.testing.assert_close(torch.tensor(table["output_score"].to_numpy(), dtype=torch.float32), direct)
    monkeypatch.setattr(scores_module, "ROWS_PER_PASS", 1)  # one edited row per pass
    torch.testing.assert_close(vector_output_scores(tiny_model, HOOK, vectors, prompts, concept), direct)


def test_a_zero_vector_moves_nothing_and_padding_does_not_matter(tiny_model, planted, prompts):
    concept = torch.tensor([TOKEN])
    zero = vector_output_scores(tiny_model, HOOK, torch.zeros(1, tiny_model.cfg.d_model), prompts, concept)
    assert zero.abs().max().item() < 1e-4
    # Prompts of different lengths share a left-padded batch: the mean over prompts is the
    # mean of each prompt's score alone.
    vector = planted.W_dec.detach()[[RAISES]] * 150.0
    together = vector_output_scores(tiny_model, HOOK, vector, prompts, concept)
    alone = torch.stack([vector_output_scores(tiny_model, HOOK, vector, [p], concept) for p in prompts]).mean(0)
    torch.testing.assert_close(together, alone, atol=1e-3, rtol=1e-4)


def test_a_vector_at_a_non_residual_hook_is_scored_too(tiny_model, prompts):
    hook = "blocks.27.hook_mlp_out"
    w_u = tiny_model.W_U.detach()[:, TOKEN]
    concept = torch.tensor([TOKEN])
    zero = vector_output_scores(tiny_model, hook, torch.zeros(1, tiny_model.cfg.d_model), prompts, concept)
    raised = vector_output_scores(tiny_model, hook, (w_u / w_u.norm() * 200.0)[None], prompts, concept)
    assert zero.abs().max().item() < 1e-4 and raised.item() > 1.0


def test_bad_output_score_requests_are_refused(tiny_model, planted, stats, prompts):
    concept = torch.tensor([TOKEN])
    dead = FeatureStats(stats.typical_max.clone(), stats.mean, stats.frequency, n_texts=1, n_tokens=1)
    dead.typical_max[3] = 0.0
    with pytest.raises(ValueError, match=r"features \[3\] never fire"):
        output_scores(tiny_model, planted, [RAISES, 3], prompts, concept, stats=dead)
    with pytest.raises(ValueError, match="at least one prompt"):
        output_scores(tiny_model, planted, [RAISES], [], concept, stats=stats)
    with pytest.raises(ValueError, match="out of range|d_sae"):
        output_scores(tiny_model, planted, [D_SAE], prompts, concept, stats=stats)
