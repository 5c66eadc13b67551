"""Any OpenAI-compatible chat endpoint as a :class:`~saelab.autointerp.backends.base.Backend`:
vLLM, a llama.cpp server, ollama, a hosted API, or saelab's own server
(:mod:`saelab.autointerp.backends.server`).

Standard library only (``urllib``, ``json``, a thread pool), so the HTTP path adds no
dependency. ``yes_probability`` reads the first reply token's ``top_logprobs`` and sums the
probability of every variant of "yes" and of "no" found there. Those are the *top* k only
(OpenAI allows k <= 20): a variant outside them is missed, so the value approaches the
embedded backend's full-vocabulary sum as k grows (on saelab's server, which allows any k,
they agree to 1e-4 once k covers the variants). A chat where neither word is among the top k
scores 0.5 and is counted in :attr:`OpenAIBackend.missing_answers`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxtyping import Float

from saelab.autointerp.backends.base import Chat

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_OPENAI_TOP_LOGPROBS = 20
"""The OpenAI API's limit on ``top_logprobs`` (vLLM's default ``--max-logprobs`` too)."""


class BackendError(RuntimeError):
    """A model endpoint could not answer: unreachable, an HTTP error, or a reply without what
    was asked for (e.g. no logprobs)."""


def check_chats(chats: Sequence[Chat]) -> None:
    """Clear errors for what no backend can answer: a bare chat instead of a list of chats,
    messages without a known role or a string content."""
    if isinstance(chats, str | dict) or not isinstance(chats, Sequence):
        raise TypeError(f"chats must be a list of chats (each a list of messages), got {type(chats).__name__}")
    for i, chat in enumerate(chats):
        if isinstance(chat, dict):
            raise TypeError("chats must be a list of chats, and a chat a list of messages; wrap one chat: [chat]")
        if isinstance(chat, str) or not isinstance(chat, Sequence) or len(chat) == 0:
            raise ValueError(f"chat {i} must be a non-empty list of {{'role', 'content'}} messages")
        for j, message in enumerate(chat):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise ValueError(f"chat {i}, message {j}: needs a 'role' among {list(ROLES)}, got {message!r:.80}")
            if not isinstance(message.get("content"), str):
                raise ValueError(f"chat {i}, message {j}: 'content' must be a string")


def is_answer(token: str, word: str) -> bool:
    """Whether a token spells ``word`` ("Yes", " yes", "YES\\n" all spell "yes")."""
    return token.strip().lower() == word


@dataclass(frozen=True)
class HttpConfig:
    """Where the endpoint is and how patiently to talk to it."""

    base_url: str
    """The API root, ending in ``/v1`` for most servers, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """The model name the server serves (``GET {base_url}/models`` lists them)."""
    api_key: str | None = None
    """Sent as a bearer token; None falls back to the ``OPENAI_API_KEY`` environment variable,
    and no header is sent when neither is set (local servers)."""
    timeout_s: float = 60.0
    """Seconds to wait for a connection and for each reply."""
    max_retries: int = 3
    """Retries after HTTP 429 or 5xx, with exponential backoff; other errors fail at once."""
    backoff_s: float = 1.0
    """First retry delay; doubled each retry (a ``Retry-After`` header wins, up to 60 s)."""
    max_concurrency: int = 8
    """Requests in flight at once (one chat per request)."""
    top_logprobs: int = MAX_OPENAI_TOP_LOGPROBS
    """How many top first-token log-probabilities ``yes_probability`` asks for (OpenAI: <= 20;
    vLLM: up to its ``--max-logprobs``; saelab's server: any)."""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            problems.append(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            problems.append("model must name the served model (see GET {base_url}/models)")
        if not self.timeout_s > 0:
            problems.append(f"timeout_s must be > 0, got {self.timeout_s}")
        if int(self.max_retries) != self.max_retries or self.max_retries < 0:
            problems.append(f"max_retries must be an integer >= 0, got {self.max_retries}")
        if not self.backoff_s >= 0:
            problems.append(f"backoff_s must be >= 0, got {self.backoff_s}")
        if int(self.max_concurrency) != self.max_concurrency or self.max_concurrency < 1:
            problems.append(f"max_concurrency must be an integer >= 1, got {self.max_concurrency}")
        if int(self.top_logprobs) != self.top_logprobs or self.top_logprobs < 1:
            problems.append(f"top_logprobs must be an integer >= 1, got {self.top_logprobs}")
        if problems:
            raise ValueError("Invalid HttpConfig: " + "; ".join(problems))
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    def __repr__(self) -> str:  # never show the key
        key = "set" if self.api_key else None
        return f"HttpConfig(base_url={self.base_url!r}, model={self.model!r}, api_key={key}, ...)"


class OpenAIBackend:
    """Chats answered by an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, **options: Any) -> None:
        """``options`` are the other :class:`HttpConfig` fields (timeout_s, max_retries, ...)."""
        self.config = HttpConfig(base_url=base_url, model=model, api_key=api_key, **options)
        self.name = f"openai:{self.config.model}"
        self.missing_answers = 0
        """Chats of the last ``yes_probability`` call with neither word among the top logprobs."""
        self.missing_answers_total = 0

    @classmethod
    def from_config(cls, config: HttpConfig) -> OpenAIBackend:
        options = {k: v for k, v in vars(config).items() if k not in ("base_url", "model", "api_key")}
        return cls(config.base_url, config.model, config.api_key, **options)

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.config.base_url!r}, model={self.config.model!r})"

    def check(self) -> None:
        """Fail fast, before a long run: the endpoint answers ``GET /models`` and serves the model."""
        listing = self._request("GET", "/models")
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            raise BackendError(f"{self.config.base_url}/models did not answer an OpenAI model list: {listing!r:.300}")
        ids = [m.get("id") for m in data if isinstance(m, dict)]
        if ids and self.config.model not in ids:
            raise BackendError(
                f"The endpoint {self.config.base_url} does not serve {self.config.model!r}; it serves {ids}"
            )

    def complete(
        self, chats: Sequence[Chat], *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """One reply per chat, stripped (greedy when ``temperature`` is 0)."""
        check_chats(chats)
        if int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if not 0 <= temperature < math.inf:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")

        def one(chat: Chat) -> str:
            body = {"messages": list(chat), "max_tokens": int(max_tokens), "temperature": float(temperature),
                    "seed": int(seed)}  # fmt: skip
            reply = self._chat(body)
            content = reply["choices"][0].get("message", {}).get("content")
            return (content or "").strip()

        return self._map(one, chats)

    def yes_probability(self, chats: Sequence[Chat]) -> Float[np.ndarray, " n"]:
        """P(yes) / (P(yes) + P(no)) of the first reply token, from its top logprobs."""
        check_chats(chats)
        found = self._map(self._yes_one, chats)
        missing = sum(1 for p in found if p is None)
        self.missing_answers = missing
        self.missing_answers_total += missing
        if missing:
            log.warning("%d of %d chats had neither 'yes' nor 'no' among the top %d logprobs of %s; scored 0.5",
                        missing, len(chats), self.config.top_logprobs, self.name)  # fmt: skip
        return np.array([0.5 if p is None else p for p in found], dtype=np.float64)

    def _yes_one(self, chat: Chat) -> float | None:
        body = {"messages": list(chat), "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": self.config.top_logprobs}  # fmt: skip
        reply = self._chat(body)
        logprobs = reply["choices"][0].get("logprobs") or {}
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not content or not isinstance(content[0].get("top_logprobs"), list) or not content[0]["top_logprobs"]:
            raise BackendError(
                f"The endpoint {self.config.base_url}/chat/completions does not return logprobs, which "
                "yes_probability needs (it reads the first reply token's top_logprobs). Use a server that "
                "supports `logprobs` and `top_logprobs` (vLLM, llama.cpp's server, saelab's own server)."
            )
        top = content[0]["top_logprobs"]
        p_yes = sum(math.exp(t["logprob"]) for t in top if is_answer(str(t.get("token", "")), "yes"))
        p_no = sum(math.exp(t["logprob"]) for t in top if is_answer(str(t.get("token", "")), "no"))
        return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else None

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._request("POST", "/chat/completions", {"model": self.config.model, **body})
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            url = f"{self.config.base_url}/chat/completions"
            raise BackendError(f"The endpoint {url} answered without choices: {reply!r:.300}")
        return reply

    def _map(self, fn: Any, chats: Sequence[Chat]) -> list[Any]:
        if len(chats) <= 1 or self.config.max_concurrency == 1:
            return [fn(chat) for chat in chats]
        with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(chats))) as pool:
            return list(pool.map(fn, chats))

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """One JSON request, retried on 429/5xx; every failure becomes a :class:`BackendError`."""
        url = self.config.base_url + path
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self.config.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(int(self.config.max_retries) + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                body = err.read().decode("utf-8", errors="replace")
                if err.code in RETRY_STATUSES and attempt < self.config.max_retries:
                    time.sleep(self._delay(attempt, err.headers.get("Retry-After")))
                    continue
                raise BackendError(
                    f"The OpenAI-compatible endpoint {url} answered HTTP {err.code}: {body[:300]}"
                ) from None
            except (urllib.error.URLError, OSError) as err:
                raise BackendError(
                    f"Cannot reach the OpenAI-compatible endpoint {url}: {_cause(err, self.config)}"
                ) from err
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise BackendError(f"The endpoint {url} did not answer JSON: {raw[:300]!r}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        try:
            return min(60.0, max(0.0, float(retry_after))) if retry_after else self.config.backoff_s * 2**attempt
        except ValueError:  # Retry-After may be an HTTP date; fall back to our own schedule
            return self.config.backoff_s * 2**attempt


def _cause(err: BaseException, config: HttpConfig) -> str:
    """Why the endpoint is unreachable: "Connection refused", "timed out after 5 s", ..."""
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"timed out after {config.timeout_s:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason) or type(reason).__name__
