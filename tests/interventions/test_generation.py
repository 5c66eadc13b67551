"""Generation: baseline and steered side by side with one seed, and steering that reaches every
generated token, with and without the KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from saelab.interventions.feature_scale import FeatureStats
from saelab.interventions.generation import generate, prompt_ids, rowwise_edit, sample_rows
from saelab.interventions.splice import spliced

HOOK = "blocks.3.hook_resid_pre"
PROMPT = "The weather today is"


@pytest.fixture(scope="module")
def sae(tiny_model, make_sae):
    return make_sae(tiny_model.cfg.d_model, 32, HOOK, seed=7)


@pytest.fixture(scope="module")
def stats():
    return FeatureStats(torch.full((32,), 2.0), torch.zeros(32), torch.zeros(32), n_texts=1, n_tokens=1)


def test_steering_reaches_every_token_under_the_kv_cache(tiny_model, sae):
    ids = prompt_ids(tiny_model, PROMPT)
    edit = rowwise_edit([4], torch.tensor([[60.0], [60.0]]), "add")
    runs = {}
    for cached in (True, False):
        with spliced(tiny_model, sae, edit) as installed:
            runs[cached] = sample_rows(
                tiny_model, [ids, ids], splice=installed, edited_rows=torch.tensor([False, True]),
                max_new_tokens=6, temperature=0.0, use_kv_cache=cached,
            )  # fmt: skip
        calls = installed.calls
        # One prefill and one single-token pass per further token with the cache; a full pass
        # per token without it. Either way the hook fired on every pass.
        assert calls == 6
    # Greedy decoding: a cache that skipped single-token passes would drift from the uncached run.
    torch.testing.assert_close(runs[True], runs[False], atol=0, rtol=0)
    assert not torch.equal(runs[True][0], runs[True][1]), "the steered row should differ from the baseline"


def test_single_token_passes_are_edited(tiny_model, sae):
    ids = prompt_ids(tiny_model, PROMPT)
    edit = rowwise_edit([4], torch.tensor([[60.0]]), "add")
    seen = []

    def record(act, hook):
        seen.append(act.clone())

    with spliced(tiny_model, sae, edit) as installed:
        tiny_model.add_hook(HOOK, record)  # registered after the splice: sees its output
        try:
            sample_rows(tiny_model, [ids], splice=installed, max_new_tokens=3, temperature=0.0)
        finally:
            tiny_model.reset_hooks(including_permanent=False)
    assert [a.shape[1] for a in seen] == [len(ids), 1, 1]
    clean = sample_rows(tiny_model, [ids], max_new_tokens=3, temperature=0.0)
    assert clean.shape == (1, 3)
    # A single-token pass's activation carries the edit: it differs from the unedited one by
    # exactly 60 * W_dec[4].
    with torch.inference_mode():
        unedited = tiny_model.run_with_cache(torch.tensor([ids]), names_filter=[HOOK])[1][HOOK]
    torch.testing.assert_close(seen[0][0, 1:] - unedited[0, 1:], (60.0 * sae.W_dec[4]).expand(len(ids) - 1, -1),
                               atol=1e-3, rtol=1e-4)  # fmt: skip


def test_batched_left_padded_rows_continue_as_they_would_alone(tiny_model):
    a, b = prompt_ids(tiny_model, PROMPT), prompt_ids(tiny_model, "Hi")
    together = sample_rows(tiny_model, [a, b], max_new_tokens=5, temperature=0.0)
    alone = torch.cat([sample_rows(tiny_model, [r], max_new_tokens=5, temperature=0.0) for r in (a, b)])
    torch.testing.assert_close(together, alone, atol=0, rtol=0)


def test_the_same_seed_gives_the_same_baseline_and_the_edit_changes_the_steered_text(tiny_model, sae, stats):
    one = generate(tiny_model, PROMPT, sae=sae, edits={4: 30.0}, stats=stats, seed=3, max_new_tokens=8, temperature=1.0)
    two = generate(tiny_model, PROMPT, sae=sae, edits={9: 30.0}, stats=stats, seed=3, max_new_tokens=8, temperature=1.0)
    assert one.baseline == two.baseline and one.baseline_ids == two.baseline_ids
    assert one.steered != one.baseline
    assert one.edits == {4: 60.0}  # 30 x typical max 2.0
    assert "<table" in one._repr_html_()
    other_seed = generate(tiny_model, PROMPT, sae=sae, edits={4: 0.0}, stats=stats, seed=4, max_new_tokens=8)
    assert other_seed.steered == other_seed.baseline  # adding 0 is no edit


@pytest.mark.parametrize(
    ("prompt", "kwargs", "match"),
    [
        ("", {}, "empty"),
        ("   ", {}, "empty"),
        (PROMPT, {"edits": {4: math.nan}}, "finite"),
        (PROMPT, {"edits": {99: 1.0}}, "out of range"),
        (PROMPT, {"max_new_tokens": 0}, "max_new_tokens"),
        (PROMPT, {"temperature": -1.0}, "temperature"),
        (PROMPT, {"mode": "shout"}, "mode"),
    ],
)
def test_bad_generation_requests_get_clear_errors(tiny_model, sae, stats, prompt, kwargs, match):
    args = {"edits": {4: 1.0}, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(tiny_model, prompt, sae=sae, stats=stats, **args)
