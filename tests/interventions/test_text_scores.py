"""Fluency and prompt relevance, checked against the model's own per-token loss."""

from __future__ import annotations

import math

import pytest
import torch

from saelab.interventions.generation import prompt_ids
from saelab.interventions.text_scores import continuation_scores


def test_perplexity_and_relevance_match_a_direct_computation(tiny_model):
    prompt = prompt_ids(tiny_model, "The capital of France is")
    cont = tiny_model.tokenizer(" Paris, a city on the Seine.", add_special_tokens=False)["input_ids"]
    other = tiny_model.tokenizer(" 7 7 7", add_special_tokens=False)["input_ids"]
    scores = continuation_scores(tiny_model, [prompt, prompt], [cont, other])
    with torch.inference_mode():
        loss = tiny_model(torch.tensor([prompt + cont]), return_type="loss", loss_per_token=True)[0]
        alone = tiny_model(torch.tensor([prompt[:1] + cont]), return_type="loss", loss_per_token=True)[0]
    with_prompt = loss[len(prompt) - 1 :]
    assert scores.perplexity[0].item() == pytest.approx(math.exp(with_prompt.mean().item()), rel=1e-4)
    expected_pmi = (alone[-len(cont) :] - with_prompt).mean().item()
    assert scores.relevance[0].item() == pytest.approx(expected_pmi, abs=1e-4)
    assert scores.n_tokens.tolist() == [len(cont), len(other)]
    # On-topic text is more predictable from the prompt than a string of sevens.
    assert scores.relevance[0] > scores.relevance[1]


def test_an_empty_continuation_scores_nan_and_lengths_must_match(tiny_model):
    prompt = prompt_ids(tiny_model, "Hello")
    scores = continuation_scores(tiny_model, [prompt], [[]])
    assert math.isnan(scores.perplexity[0].item()) and math.isnan(scores.relevance[0].item())
    with pytest.raises(ValueError, match="2 prompts but 1"):
        continuation_scores(tiny_model, [prompt, prompt], [[5]])
