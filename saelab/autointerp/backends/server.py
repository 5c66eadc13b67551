"""A small OpenAI-compatible HTTP server for the embedded model (through
:class:`~saelab.autointerp.backends.local.LocalBackend`).

It lets users without vLLM or a llama.cpp server try the HTTP path, and it is what the HTTP
backend is tested against: the same model behind HTTP must give the same numbers.

* ``GET /v1/models``; ``POST /v1/chat/completions`` with ``messages``, ``max_tokens``
  (or ``max_completion_tokens``), ``temperature``, ``seed``, ``logprobs``, ``top_logprobs``
  (real log-probabilities from the model's logits, in OpenAI's response shape, ``usage``
  counted), ``n=1`` only, no streaming. Bad requests get 400 with an OpenAI-style error body.
* ``top_logprobs`` may exceed OpenAI's 20 (up to the vocabulary), so ``yes_probability`` over
  HTTP can see every variant of "yes" and "no".
* Standard library only: ``ThreadingHTTPServer``, with one lock around the model.

Run it: ``python -m saelab.autointerp.backends.server --port 8000``; then
``OpenAIBackend("http://127.0.0.1:8000/v1", "smollm2-135m")``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from transformer_lens import HookedTransformer

from saelab.autointerp.backends.http import check_chats
from saelab.autointerp.backends.local import LocalBackend, LocalConfig, Reply, TokenLogprob

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
MAX_BODY_BYTES = 16 * 2**20


class RequestError(Exception):
    """A request the server refuses, with the HTTP status and the message the client sees."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class ChatRequest:
    """The fields of a ``/chat/completions`` request this server honours."""

    messages: list[dict[str, str]]
    model: str | None
    """The model asked for (None: whichever the server serves)."""
    max_tokens: int
    temperature: float
    seed: int
    logprobs: bool
    top_logprobs: int


def parse_request(body: bytes, vocab_size: int) -> ChatRequest:
    """A validated request, or a :class:`RequestError` saying what is wrong."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"The request body is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object")
    if "messages" not in data:
        raise RequestError("Missing required field 'messages'", param="messages")
    try:
        check_chats([data["messages"]])
    except (TypeError, ValueError) as err:
        raise RequestError(f"Invalid 'messages': {err}".replace("chat 0, ", ""), param="messages") from None
    if data.get("n", 1) != 1:
        raise RequestError(f"Only n=1 is supported, got n={data['n']!r}", param="n")
    if data.get("stream"):
        raise RequestError("Streaming is not supported; send stream=false", param="stream")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens", DEFAULT_MAX_TOKENS))
    temperature = data.get("temperature", 1.0)
    seed = data.get("seed")
    logprobs, top = data.get("logprobs", False), data.get("top_logprobs") or 0
    _require(data.get("model") is None or isinstance(data["model"], str), "model must be a string", "model")
    _require(_is_int(max_tokens) and max_tokens >= 1, "max_tokens must be an integer >= 1", "max_tokens")
    _require(_is_number(temperature) and 0 <= temperature <= 2, "temperature must be in [0, 2]", "temperature")
    _require(seed is None or _is_int(seed), "seed must be an integer", "seed")
    _require(isinstance(logprobs, bool), "logprobs must be true or false", "logprobs")
    _require(_is_int(top) and 0 <= top <= vocab_size, f"top_logprobs must be in [0, {vocab_size}]", "top_logprobs")
    _require(logprobs or not top, "top_logprobs needs logprobs=true", "top_logprobs")
    return ChatRequest(
        messages=[{"role": m["role"], "content": m["content"]} for m in data["messages"]], model=data.get("model"),
        max_tokens=int(max_tokens), temperature=float(temperature),
        # No seed: a fresh one, so unseeded requests vary as with any OpenAI-style server.
        seed=int(seed) if seed is not None else random.randrange(2**31),
        logprobs=bool(logprobs), top_logprobs=int(top),
    )  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise RequestError(message, param=param)


def completion_body(reply: Reply, model_id: str, with_logprobs: bool) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object for one reply."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    def position(lp: TokenLogprob) -> dict[str, Any]:
        return {**entry(lp.token, lp.logprob), "top_logprobs": [entry(t, v) for _, t, v in lp.top]}

    logprobs = {"content": [position(lp) for lp in reply.logprobs]} if with_logprobs else None
    choice = {"index": 0, "message": {"role": "assistant", "content": reply.text}, "logprobs": logprobs,
              "finish_reason": reply.finish_reason}  # fmt: skip
    n_new = len(reply.token_ids) + (reply.finish_reason == "stop")  # the stop token was generated too
    usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": n_new,
             "total_tokens": reply.prompt_tokens + n_new}  # fmt: skip
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model_id, "choices": [choice], "usage": usage}  # fmt: skip


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: LocalBackend, model_id: str, logprobs: bool) -> None:
        super().__init__(address, _Handler)
        self.backend, self.model_id, self.logprobs = backend, model_id, logprobs
        self.lock = threading.Lock()  # one model, one request at a time


class _Handler(BaseHTTPRequestHandler):
    server: _Server  # pyright: ignore[reportIncompatibleVariableOverride]

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/v1/models":
            return self._send(404, error_body(f"No route GET {self.path}; try GET /v1/models", 404))
        card = {"id": self.server.model_id, "object": "model", "created": 0, "owned_by": "saelab"}
        self._send(200, {"object": "list", "data": [card]})

    def do_POST(self) -> None:
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            return self._send(404, error_body(f"No route POST {self.path}; try POST /v1/chat/completions", 404))
        try:
            self._send(200, self._complete())
        except RequestError as err:
            self._send(err.status, error_body(str(err), err.status, err.param))
        except ValueError as err:  # e.g. a prompt longer than the context
            self._send(400, error_body(str(err), 400))
        except Exception as err:  # a server must answer; the traceback goes to the log
            log.exception("chat completion failed")
            self._send(500, error_body(f"{type(err).__name__}: {err}", 500))

    def _complete(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            raise RequestError(f"The request needs a JSON body of at most {MAX_BODY_BYTES} bytes")
        backend = self.server.backend
        request = parse_request(self.rfile.read(length), backend.model.cfg.d_vocab)
        if request.model is not None and request.model != self.server.model_id:
            raise RequestError(
                f"The model {request.model!r} does not exist; this server serves {self.server.model_id!r}",
                status=404, param="model",
            )  # fmt: skip
        with_logprobs = request.logprobs and self.server.logprobs
        with self.server.lock:
            (reply,) = backend.generate(
                [request.messages],  # type: ignore[list-item]
                max_tokens=request.max_tokens, temperature=request.temperature, seed=request.seed,
                logprobs=with_logprobs, top_logprobs=request.top_logprobs if with_logprobs else 0,
            )  # fmt: skip
        return completion_body(reply, self.server.model_id, with_logprobs)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class ServerHandle:
    """A running server: ``url`` is the API root (``http://127.0.0.1:PORT/v1``); ``close()``
    stops it (also on leaving a ``with`` block)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.host, self.port = str(server.server_address[0]), int(server.server_address[1])
        self.url = f"http://{self.host}:{self.port}/v1"
        self.model_id = server.model_id
        self._thread = threading.Thread(target=server.serve_forever, name=f"saelab-server-{self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C stops it)."""
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServerHandle({self.url!r}, model={self.model_id!r})"


def serve(
    model: HookedTransformer | LocalBackend, host: str = "127.0.0.1", port: int = 0, *,
    model_id: str | None = None, logprobs: bool = True,
) -> ServerHandle:  # fmt: skip
    """Serve ``model`` in a background thread; ``port=0`` picks a free port.

    ``model_id`` is the name clients send (default: the model's ``cfg.model_name``).
    ``logprobs=False`` serves replies without logprobs, as some servers do (to test clients).
    """
    backend = model if isinstance(model, LocalBackend) else LocalBackend(model, LocalConfig(progress=False))
    name = model_id or backend.model.cfg.model_name
    server = _Server((host, int(port)), backend, name, logprobs)
    handle = ServerHandle(server)
    log.info("Serving %s at %s", name, handle.url)
    return handle


def main(argv: list[str] | None = None) -> None:
    """Load a model and serve it until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a saelab model over an OpenAI-compatible HTTP API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="smollm2-135m", help="a saelab.load_model name")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from saelab.models import load_model

    handle = serve(load_model(args.model, device=args.device), args.host, args.port)
    log.info("Try: OpenAIBackend(%r, %r). Ctrl-C to stop.", handle.url, handle.model_id)
    handle.wait()


if __name__ == "__main__":
    main()
