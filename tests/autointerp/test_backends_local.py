"""The embedded model as a chat backend: its prompt is the chat template's, a chat's P(yes) does
not depend on its batch and equals the plain full-vocabulary computation, and generation stops
at the end of the assistant's turn."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from saelab.autointerp.backends.base import Backend
from saelab.autointerp.backends.local import LocalBackend, LocalConfig, chat_token_ids, chatml, render_chat

YES = [{"role": "user", "content": "Reply with the single word yes."}]
NO = [{"role": "user", "content": "Reply with the single word no."}]
SKY = [
    {"role": "system", "content": "You answer yes or no."},
    {"role": "user", "content": "Is the sky green?"},
]
BLUE = [  # a reply of 8 tokens, then the end of turn (measured)
    {"role": "system", "content": "You answer in one word."},
    {"role": "user", "content": "What color is the sky?"},
]
LONG = [{"role": "user", "content": "Does the word 'cat' refer to an animal? Answer yes or no. " * 6}]
SHORT = [{"role": "user", "content": "Yes?"}]


@pytest.fixture(scope="module")
def backend(model):
    return LocalBackend(model, LocalConfig(batch_size=4, progress=False))


def test_chatml_is_the_smollm2_format():
    assert chatml(SKY) == (
        "<|im_start|>system\nYou answer yes or no.<|im_end|>\n"
        "<|im_start|>user\nIs the sky green?<|im_end|>\n<|im_start|>assistant\n"
    )
    # A tokenizer without a chat template gets ChatML, and no system message is invented.
    assert render_chat(SimpleNamespace(chat_template=None), YES) == chatml(YES)


def test_config_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        LocalConfig(batch_size=0)


@pytest.mark.slow
def test_the_chat_template_agrees_with_chatml(backend):
    tokenizer = backend.tokenizer
    assert isinstance(tokenizer.chat_template, str)  # the GGUF conversion keeps SmolLM2's template
    assert render_chat(tokenizer, SKY) == chatml(SKY)
    # Without a system message SmolLM2's template inserts its default one; we follow it.
    rendered = render_chat(tokenizer, YES)
    assert rendered.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert rendered.endswith(chatml(YES))
    assert rendered.count("<|im_start|>system") == 1


@pytest.mark.slow
def test_chat_ids_tokenize_the_template_and_keep_special_strings_in_contents_as_text(backend):
    tokenizer = backend.tokenizer
    for chat in (YES, SKY, [{"role": "user", "content": "  two spaces\n\nand lines "}]):
        assert (
            chat_token_ids(tokenizer, chat)
            == tokenizer(render_chat(tokenizer, chat), add_special_tokens=False)["input_ids"]
        )
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pasted = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a <|im_end|> b"}]
    assert chat_token_ids(tokenizer, pasted).count(end) == 2  # one per message: the pasted one is text


@pytest.mark.slow
def test_it_is_a_backend_named_after_its_model(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "local:smollm2-135m"
    yes_tokens = {backend.token_strings()[i] for i in backend.answer_ids("yes")}
    assert {"Yes", " yes"} <= yes_tokens and all(t.strip().lower() == "yes" for t in yes_tokens)


@pytest.mark.slow
def test_yes_probability_equals_the_plain_full_vocabulary_computation(backend, model):
    tokenizer = backend.tokenizer
    yes, no = backend.answer_ids("yes"), backend.answer_ids("no")
    expected = []
    for chat in (YES, SKY, LONG):
        ids = torch.tensor([chat_token_ids(tokenizer, chat)])
        with torch.inference_mode():
            probs = model(ids)[0, -1].softmax(-1).double()
        expected.append(float(probs[yes].sum() / (probs[yes].sum() + probs[no].sum())))
    assert_close(backend.yes_probability([YES, SKY, LONG]), np.array(expected), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_chats_yes_probability_does_not_depend_on_its_batch(backend):
    alone = backend.yes_probability([SKY])[0]
    mixed = backend.yes_probability([LONG, SKY, SHORT, YES, LONG, NO])  # batch_size 4: padded both ways
    assert_close(mixed[1], alone, atol=1e-4, rtol=0)
    one_by_one = LocalBackend(backend.model, LocalConfig(batch_size=1, progress=False))
    assert_close(mixed, one_by_one.yes_probability([LONG, SKY, SHORT, YES, LONG, NO]), atol=1e-4, rtol=0)
    assert mixed[0] == mixed[4]


@pytest.mark.slow
def test_asking_for_yes_scores_higher_than_asking_for_no(backend):
    # Measured: 0.73 vs 0.13. The model need not be smart, only follow a one-word instruction.
    p_yes, p_no = backend.yes_probability([YES, NO])
    assert 0 < p_no < p_yes < 1
    assert p_yes - p_no > 0.3


@pytest.mark.slow
def test_complete_stops_at_the_end_of_turn(backend):
    (reply,) = backend.generate([BLUE], max_tokens=32)
    assert reply.finish_reason == "stop" and 0 < len(reply.token_ids) < 32
    assert "<|im_end|>" not in reply.text and "blue" in reply.text
    assert backend.complete([BLUE], max_tokens=32) == [reply.text.strip()]
    (cut,) = backend.generate([BLUE], max_tokens=3)
    assert cut.finish_reason == "length" and cut.token_ids == reply.token_ids[:3]


@pytest.mark.slow
def test_greedy_and_seeded_replies_do_not_depend_on_the_batch(backend):
    batch = [LONG, BLUE, SHORT]
    assert backend.complete(batch, max_tokens=6) == [backend.complete([c], max_tokens=6)[0] for c in batch]
    sampled = backend.complete([LONG, SHORT], max_tokens=6, temperature=1.0, seed=3)
    assert sampled == [backend.complete([c], max_tokens=6, temperature=1.0, seed=3)[0] for c in (LONG, SHORT)]
    seeds = {backend.complete([LONG], max_tokens=4, temperature=1.0, seed=s)[0] for s in range(3)}
    assert len(seeds) > 1


@pytest.mark.slow
def test_generation_logprobs_are_the_next_token_distribution(backend):
    (reply,) = backend.generate([SKY], max_tokens=2, logprobs=True, top_logprobs=5)
    first = reply.logprobs[0]
    values = [v for _, _, v in first.top]
    assert values == sorted(values, reverse=True) and first.token_id == first.top[0][0]  # greedy: the top one
    reference = backend.next_logprobs([chat_token_ids(backend.tokenizer, SKY)])[0]
    assert_close(torch.tensor(values), reference.topk(5).values, atol=1e-4, rtol=0)
    assert first.token == backend.token_strings()[first.token_id]


@pytest.mark.slow
def test_bad_input_gets_a_clear_error(backend):
    with pytest.raises(TypeError, match="wrap one chat"):
        backend.yes_probability(SKY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        backend.yes_probability([[{"role": "robot", "content": "hi"}]])
    with pytest.raises(ValueError, match="max_tokens"):
        backend.complete([SKY], max_tokens=0)
    with pytest.raises(ValueError, match="context"):
        backend.complete([SKY], max_tokens=backend.model.cfg.n_ctx)
