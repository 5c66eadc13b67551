"""The OpenAI-compatible backend against saelab's real server on the real model: the same model
behind HTTP gives the same numbers, and every failure says what went wrong and where.

Retries and the API key are checked against a small stdlib server that answers 503 on
purpose; everything else runs against the real server."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from torch.testing import assert_close

from saelab.autointerp.backends.base import Backend
from saelab.autointerp.backends.http import BackendError, HttpConfig, OpenAIBackend
from saelab.autointerp.backends.local import LocalBackend, LocalConfig
from saelab.autointerp.backends.server import serve

CHATS = [
    [{"role": "user", "content": "Reply with the single word yes."}],
    [{"role": "user", "content": "Reply with the single word no."}],
    [{"role": "user", "content": "Is Paris the capital of France? Answer yes or no."}],
    [{"role": "system", "content": "You answer yes or no."}, {"role": "user", "content": "Is the sky green?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "What color is the sky?"}],
    [{"role": "user", "content": "Hello, how are you?"}],  # neither word is in its top 20
]
HELLO = CHATS[-1]
BLUE = CHATS[4]  # an 8-token reply, then the end of turn (measured)


@pytest.fixture(scope="module")
def local(model):
    return LocalBackend(model, LocalConfig(batch_size=4, progress=False))


@pytest.fixture(scope="module")
def server(local):
    with serve(local) as handle:
        yield handle


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_check_passes_and_the_backend_is_named_after_the_model(server):
    backend = OpenAIBackend(server.url, "smollm2-135m")
    backend.check()
    assert isinstance(backend, Backend) and backend.name == "openai:smollm2-135m"
    with pytest.raises(BackendError, match="does not serve 'gpt-4'"):
        OpenAIBackend(server.url, "gpt-4").check()


@pytest.mark.slow
def test_yes_probability_over_http_equals_the_embedded_backend(server, local):
    # OpenAI caps top_logprobs at 20; saelab's server does not, so with enough of them every
    # variant of "yes" and "no" is seen and the sums are the full-vocabulary ones.
    remote = OpenAIBackend(server.url, "smollm2-135m", top_logprobs=5000, max_concurrency=4)
    assert_close(remote.yes_probability(CHATS), local.yes_probability(CHATS), atol=1e-4, rtol=0)
    assert remote.missing_answers == 0


@pytest.mark.slow
def test_with_the_top_20_a_chat_without_either_word_scores_half_and_is_counted(server, caplog):
    remote = OpenAIBackend(server.url, "smollm2-135m")
    with caplog.at_level(logging.WARNING, logger="saelab.autointerp.backends.http"):
        p = remote.yes_probability([CHATS[2], HELLO])
    assert p[1] == 0.5 and remote.missing_answers == 1 and remote.missing_answers_total == 1
    assert "1 of 2 chats had neither" in caplog.text
    assert 0 < p[0] < 0.5  # "No" leads for Paris (measured 0.16)


@pytest.mark.slow
def test_replies_over_http_equal_the_embedded_replies(server, local):
    remote = OpenAIBackend(server.url, "smollm2-135m")
    greedy = [BLUE, HELLO]
    assert remote.complete(greedy, max_tokens=8) == local.complete(greedy, max_tokens=8)
    sampled = remote.complete(CHATS[:2], max_tokens=6, temperature=1.0, seed=5)
    assert sampled == local.complete(CHATS[:2], max_tokens=6, temperature=1.0, seed=5)


@pytest.mark.slow
def test_the_server_answers_in_the_openai_shape(server):
    body = {"model": "smollm2-135m", "messages": BLUE, "max_tokens": 32, "temperature": 0,
            "logprobs": True, "top_logprobs": 3}  # fmt: skip
    status, reply = post(server.url + "/chat/completions", json.dumps(body).encode())
    assert status == 200 and reply["object"] == "chat.completion"
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    content = choice["logprobs"]["content"]
    usage = reply["usage"]
    assert usage["completion_tokens"] == len(content)  # every generated token, the end of turn too
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert [len(c["top_logprobs"]) for c in content] == [3] * len(content)
    assert all(c["token"] == c["top_logprobs"][0]["token"] for c in content)  # greedy picks the top one


@pytest.mark.slow
def test_bad_requests_get_400_with_an_openai_error_body(server):
    url = server.url + "/chat/completions"
    status, reply = post(url, b"{not json")
    assert status == 400 and "not valid JSON" in reply["error"]["message"]
    status, reply = post(url, json.dumps({"max_tokens": 3}).encode())
    assert status == 400 and reply["error"]["param"] == "messages"
    status, reply = post(url, json.dumps({"messages": CHATS[0], "n": 2}).encode())
    assert status == 400 and "Only n=1" in reply["error"]["message"]
    status, reply = post(url, json.dumps({"messages": CHATS[0], "top_logprobs": 2}).encode())
    assert status == 400 and "logprobs=true" in reply["error"]["message"]


@pytest.mark.slow
def test_a_400_from_the_server_surfaces_its_message(server):
    remote = OpenAIBackend(server.url, "smollm2-135m")
    with pytest.raises(BackendError, match="HTTP 400.*context of 2048 tokens") as err:
        remote.complete(CHATS[:1], max_tokens=5000)
    assert f"{server.url}/chat/completions" in str(err.value)


@pytest.mark.slow
def test_a_server_without_logprobs_gets_a_clear_error(local):
    with serve(local, logprobs=False) as bare:
        remote = OpenAIBackend(bare.url, "smollm2-135m")
        assert remote.complete(CHATS[:1], max_tokens=4)  # replies still work
        with pytest.raises(BackendError, match="does not return logprobs") as err:
            remote.yes_probability(CHATS[:1])
    assert bare.url in str(err.value)


def test_an_unreachable_endpoint_fails_fast_naming_the_url():
    with socket.socket() as sock:  # a port that was free a moment ago, and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    start = time.perf_counter()
    with pytest.raises(BackendError, match="Cannot reach the OpenAI-compatible endpoint") as err:
        OpenAIBackend(url, "m", timeout_s=2).check()
    assert time.perf_counter() - start < 2
    assert f"{url}/models" in str(err.value) and "refused" in str(err.value).lower()


def test_config_lists_every_problem_and_never_shows_the_key():
    with pytest.raises(ValueError, match="base_url.*max_concurrency"):
        HttpConfig(base_url="localhost:8000", model="m", max_concurrency=0)
    config = HttpConfig(base_url="http://h:1/v1/", model="m", api_key="sk-secret")
    assert config.base_url == "http://h:1/v1" and "sk-secret" not in repr(config)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then a one-word chat completion."""

    failures = 2
    seen: list[str | None] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers.get("Authorization"))
        if len(self.seen) <= self.failures:
            body, status = b'{"error": {"message": "busy"}}', 503
        else:
            body, status = json.dumps({"choices": [{"message": {"content": " hi "}}]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    _Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_busy_answers_are_retried_and_the_key_comes_from_the_environment(flaky, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert OpenAIBackend(flaky, "m", backoff_s=0.01).complete([CHATS[0]]) == ["hi"]
    assert _Flaky.seen == ["Bearer sk-env"] * 3
    _Flaky.seen = []
    with pytest.raises(BackendError, match="HTTP 503: .*busy"):
        OpenAIBackend(flaky, "m", api_key="sk-given", max_retries=1, backoff_s=0.01).complete([CHATS[0]])
    assert _Flaky.seen == ["Bearer sk-given"] * 2


def test_yes_probability_returns_floats_in_order(flaky):
    assert np.asarray(OpenAIBackend(flaky, "m").yes_probability([])).shape == (0,)
