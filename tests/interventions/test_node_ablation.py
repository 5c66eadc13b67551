"""saelab.interventions.node_ablation: single-node ablations of many prompts of different lengths
in one call (padded, rows of different prompts sharing passes) equal one call per prompt, the
metric reading each prompt's own end; clear errors for nodes that do not fit. Tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from saelab.extract.tokens import tokenize
from saelab.interventions.metrics import next_token_logprob
from saelab.interventions.node_ablation import ablation_effects

HOOK = "blocks.26.hook_resid_pre"
PROMPTS = ["The cat sat on the mat and", "import numpy as", "Bonjour, je suis content de vous voir ici, mon ami"]
METRIC = next_token_logprob(-2)  # negative: it must read each prompt's end, not the padding's


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 16, HOOK, seed=1)


@pytest.fixture(scope="module")
def padded(tiny_model):
    ids = tokenize(tiny_model, PROMPTS).ids
    assert len({len(row) for row in ids}) == len(PROMPTS), "the prompts must differ in length"
    tokens = torch.zeros(len(ids), max(len(row) for row in ids), dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for r, row in enumerate(ids):
        tokens[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
    return ids, tokens, mask


@pytest.fixture(scope="module")
def nodes(padded):
    ids = padded[0]
    rows = []
    for p, row in enumerate(ids):
        n = len(row)
        rows += [(p, 1, 3), (p, n - 2, 5), (p, -1, -1), (p, n // 2, 0), (p, 2, -1), (p, -3, 9)]
    return pd.DataFrame(rows, columns=["prompt", "position", "feature"]).sample(frac=1.0, random_state=0)


def test_many_prompts_in_one_call_equal_one_call_per_prompt(tiny_model, sae, padded, nodes):
    ids, tokens, mask = padded
    together = ablation_effects(tiny_model, sae, tokens, METRIC, nodes, attention_mask=mask, batch_size=4)
    assert together.shape == (len(nodes),)
    for p, row in enumerate(ids):
        mine = (nodes["prompt"] == p).to_numpy()
        alone = ablation_effects(tiny_model, sae, torch.tensor([row]), METRIC, nodes.loc[mine, ["position", "feature"]])
        np.testing.assert_allclose(together[mine], alone, rtol=1e-4, atol=2e-5)
    assert np.abs(together).max() > 1e-3
    # Texts are tokenized and right-padded the same way; tuples name the prompt first.
    triples = list(nodes.itertuples(index=False, name=None))
    from_texts = ablation_effects(tiny_model, sae, PROMPTS, METRIC, triples, batch_size=5)
    np.testing.assert_allclose(from_texts, together, rtol=1e-4, atol=2e-5)


def test_left_padding_gives_the_same_effects(tiny_model, sae, padded, nodes):
    ids, tokens, mask = padded
    right = ablation_effects(tiny_model, sae, tokens, METRIC, nodes, attention_mask=mask)
    left_tokens, left_mask = torch.zeros_like(tokens), torch.zeros_like(mask)
    for r, row in enumerate(ids):
        left_tokens[r, -len(row) :], left_mask[r, -len(row) :] = torch.tensor(row), 1
    left = ablation_effects(tiny_model, sae, left_tokens, METRIC, nodes, attention_mask=left_mask)
    np.testing.assert_allclose(left, right, rtol=1e-3, atol=1e-4)


def test_nodes_that_do_not_fit_get_clear_errors(tiny_model, sae, padded):
    _, tokens, mask = padded
    with pytest.raises(ValueError, match="say each node's prompt"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(1, 2)], attention_mask=mask)
    with pytest.raises(ValueError, match="prompt is out of range"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(3, 1, 2)], attention_mask=mask)
    with pytest.raises(ValueError, match="outside its prompt"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(1, int(mask[1].sum()), 2)], attention_mask=mask)
    with pytest.raises(ValueError, match="BOS"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(1, -int(mask[1].sum()), 2)], attention_mask=mask)
    gap = mask.clone()
    gap[0, 2] = 0
    with pytest.raises(ValueError, match="one block"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(0, 1, 2)], attention_mask=gap)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ablation_effects(tiny_model, sae, tokens, METRIC, [(0, 1, 2)], attention_mask=mask, batch_size=0)
    assert ablation_effects(tiny_model, sae, tokens, METRIC, [], attention_mask=mask).shape == (0,)
