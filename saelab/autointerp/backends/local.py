"""The embedded instruct model (a ``HookedTransformer``) as a chat
:class:`~saelab.autointerp.backends.base.Backend`: offline, on the model's device.

* Chats are rendered with the tokenizer's chat template (ChatML, written out here, when the
  tokenizer has none). SmolLM2's template inserts a default system message when a chat has
  none; we follow the template. Message *contents* are tokenized by saelab's one policy, so
  a ``<|im_end|>`` inside a feature's context is text, not the end of the turn.
* ``yes_probability``: one forward per batch of chats, right-padded, each row read at its own
  last real position (causal attention never sees the pads, so a row's answer does not depend
  on its batch); log-softmax over the full vocabulary, summed over every token that spells
  "yes" (resp. "no"). Only the read positions are unembedded (the unembedding is a fifth of
  the compute at 80 tokens per chat).
* ``complete`` / :meth:`LocalBackend.generate`: left-padded batches with a KV cache, greedy
  or sampled, stopping per row at ``<|im_end|>``/EOS. Sampling adds Gumbel noise drawn from
  ``seed`` alone, the same for every row, so a chat's reply depends on its seed, not on its
  batch (as an OpenAI ``seed`` does per request).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from saelab._util.config import JsonConfig
from saelab.autointerp.backends.base import Chat
from saelab.autointerp.backends.http import check_chats, is_answer
from saelab.extract.batches import pad_rows
from saelab.extract.tokens import Tokenized, encode_texts, tokenizer_of

log = logging.getLogger(__name__)

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
"""End-of-turn and end-of-text: generation stops at either (and at the tokenizer's EOS)."""
_MARK = re.compile("\ue000(\\d+)\ue001")  # private-use code points: a slot for message i


@dataclass(frozen=True)
class LocalConfig(JsonConfig):
    """How the embedded backend batches its work."""

    batch_size: int = 16
    """Chats per forward pass (both operations). Chats are length-sorted first."""
    progress: bool = True
    """Show a tqdm bar when a call runs more than a few batches."""

    def __post_init__(self) -> None:
        problems = []
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1, got {self.batch_size}")
        self.raise_problems(problems)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token and its log-probability (under the untempered model), with the
    ``top`` most likely tokens at that step (empty unless asked for)."""

    token_id: int
    token: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()
    """``(token_id, token, logprob)``, most likely first."""


@dataclass(frozen=True)
class Reply:
    """One generated reply."""

    text: str
    """The decoded reply, special tokens and the stop token left out (not stripped)."""
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: Literal["stop", "length"]
    """"stop" at an end-of-turn token, "length" at ``max_tokens``."""
    logprobs: tuple[TokenLogprob, ...] = ()
    """Per generated token, the stop token included, when asked for."""


def chatml(chat: Chat) -> str:
    """ChatML, as SmolLM2-Instruct was trained on, ending with the assistant's turn opened."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
    return turns + "<|im_start|>assistant\n"


def render_chat(tokenizer: Any, chat: Chat) -> str:
    """The prompt text of ``chat``: the tokenizer's chat template with the generation prompt,
    or :func:`chatml` when the tokenizer carries no template."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        return chatml(chat)
    messages = [{"role": m["role"], "content": m["content"]} for m in chat]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def chat_token_ids(tokenizer: Any, chat: Chat) -> list[int]:
    """Token ids of the rendered chat: the template's special tokens as special tokens, each
    message's content by :func:`~saelab.extract.tokens.encode_texts` (special-token strings as
    text). Equals tokenizing the rendered text whenever no content holds a special-token string.
    """
    added: dict[str, int] = dict(getattr(tokenizer, "added_tokens_encoder", {}) or {})
    slots = [{"role": m["role"], "content": f"\ue000{i}\ue001"} for i, m in enumerate(chat)]
    skeleton = render_chat(tokenizer, slots)  # type: ignore[arg-type]
    pattern = "(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")" if added else "(?!)"
    ids: list[int] = []
    pieces: list[str] = []
    for piece in re.split(pattern, skeleton):
        if piece in added:
            ids.append(added[piece])
            pieces.append(piece)
        elif piece:
            text = _MARK.sub(lambda mark: chat[int(mark.group(1))]["content"], piece)
            ids += encode_texts(tokenizer, [text])[0]
            pieces.append(text)
    if "".join(pieces) != render_chat(tokenizer, chat):
        # The template rewrites contents (e.g. trims them): tokenize its text as a server would.
        return list(tokenizer(render_chat(tokenizer, chat), add_special_tokens=False)["input_ids"])
    return ids


class LocalBackend:
    """A ``HookedTransformer`` instruct model answering chats, on the model's device."""

    def __init__(self, model: HookedTransformer, config: LocalConfig | None = None) -> None:
        self.model = model
        self.config = config or LocalConfig()
        self.tokenizer = tokenizer_of(model)
        self.name = f"local:{model.cfg.model_name}"
        added = dict(getattr(self.tokenizer, "added_tokens_encoder", {}) or {})
        eos = self.tokenizer.eos_token_id
        self.stop_ids = frozenset(
            [added[t] for t in STOP_TOKENS if t in added] + ([eos] if isinstance(eos, int) else [])
        )
        self._vocab: list[str] | None = None

    @classmethod
    def load(cls, name: str = "smollm2-135m", device: str | torch.device | None = None,
             config: LocalConfig | None = None) -> LocalBackend:  # fmt: skip
        """Load a model with :func:`saelab.load_model` and wrap it."""
        from saelab.models import load_model

        return cls(load_model(name, device=device), config)

    def __repr__(self) -> str:
        return f"LocalBackend({self.name!r}, device={self.device}, batch_size={self.config.batch_size})"

    @property
    def device(self) -> torch.device:
        return torch.device(self.model.cfg.device or "cpu")

    def token_strings(self) -> list[str]:
        """Every token id decoded on its own (computed once: about half a second)."""
        if self._vocab is None:
            size = min(self.model.cfg.d_vocab, len(self.tokenizer))
            decoded = [str(s) for s in self.tokenizer.batch_decode([[i] for i in range(size)])]
            self._vocab = decoded + [""] * (self.model.cfg.d_vocab - size)  # ids the tokenizer lacks
        return self._vocab

    def answer_ids(self, word: str) -> list[int]:
        """Ids of every (non-special) token that spells ``word``: "yes" -> "Yes", " yes", ..."""
        special = set(self.tokenizer.all_special_ids)
        return [i for i, s in enumerate(self.token_strings()) if i not in special and is_answer(s, word)]

    def encode(self, chats: Sequence[Chat], room: int = 0) -> list[list[int]]:
        """Prompt ids per chat, checked to leave ``room`` new tokens within the context."""
        check_chats(chats)
        rows = [chat_token_ids(self.tokenizer, chat) for chat in chats]
        too_long = [i for i, r in enumerate(rows) if len(r) + room > self.model.cfg.n_ctx]
        if too_long:
            raise ValueError(
                f"chats {too_long[:10]} need more than the model's context of {self.model.cfg.n_ctx} tokens "
                f"(prompt + {room} new); the longest prompt has {max(len(rows[i]) for i in too_long)} tokens"
            )
        return rows

    def yes_probability(self, chats: Sequence[Chat]) -> Float[np.ndarray, " n"]:
        """P(yes) / (P(yes) + P(no)) of the first reply token, summed over the full vocabulary."""
        rows = self.encode(chats)
        yes = torch.tensor(self.answer_ids("yes"), device=self.device)
        no = torch.tensor(self.answer_ids("no"), device=self.device)
        out = np.empty(len(rows), dtype=np.float64)
        for take in self._batches(rows, "yes_probability"):
            logp = self.next_logprobs([rows[i] for i in take])
            # log P(yes) - log P(no) -> sigmoid = P(yes) / (P(yes) + P(no)), without underflow
            margin = logp[:, yes].logsumexp(-1) - logp[:, no].logsumexp(-1)
            out[take] = torch.sigmoid(margin).double().cpu().numpy()
        return out

    def next_logprobs(self, rows: Sequence[list[int]]) -> Float[Tensor, "batch vocab"]:
        """Log-probabilities of the token after each row (one right-padded forward pass)."""
        width = max(len(r) for r in rows)
        batch = pad_rows(Tokenized(ids=list(rows), has_bos=False, truncated=[]), range(len(rows)), width, "right",
                         False, 0)  # fmt: skip
        last = torch.tensor([len(r) - 1 for r in rows], device=self.device)
        with torch.inference_mode():
            logits = self._last_logits(batch.tokens.to(self.device), batch.attention_mask.to(self.device), last)
        return logits.float().log_softmax(-1)

    def complete(
        self, chats: Sequence[Chat], *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """One reply per chat, stripped (greedy when ``temperature`` is 0)."""
        return [r.text.strip() for r in self.generate(chats, max_tokens=max_tokens, temperature=temperature, seed=seed)]

    def generate(
        self, chats: Sequence[Chat], *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0,
        logprobs: bool = False, top_logprobs: int = 0,
    ) -> list[Reply]:  # fmt: skip
        """Replies with their token ids, stop reason and (optionally) per-token log-probabilities."""
        if int(max_tokens) != max_tokens or max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens}")
        if not 0 <= temperature < math.inf:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
        if int(top_logprobs) != top_logprobs or not 0 <= top_logprobs <= self.model.cfg.d_vocab:
            raise ValueError(f"top_logprobs must be an integer in [0, {self.model.cfg.d_vocab}], got {top_logprobs}")
        rows = self.encode(chats, room=int(max_tokens))
        replies: list[Reply | None] = [None] * len(rows)
        want = logprobs or top_logprobs > 0
        for take in self._batches(rows, "generate"):
            done = self._generate_batch([rows[i] for i in take], int(max_tokens), float(temperature), int(seed),
                                        int(top_logprobs) if want else -1)  # fmt: skip
            for i, reply in zip(take, done, strict=True):
                replies[i] = reply
        return [r for r in replies if r is not None]

    def _batches(self, rows: Sequence[list[int]], desc: str) -> list[list[int]]:
        """Indices per batch, longest first, so each batch holds chats of similar length."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        size = self.config.batch_size
        batches = [order[lo : lo + size] for lo in range(0, len(order), size)]
        return list(tqdm(batches, desc=desc, leave=False, disable=not self.config.progress or len(batches) < 4))

    def _last_logits(
        self, tokens: Int[Tensor, "batch pos"], mask: Int[Tensor, "batch pos"], last: Int[Tensor, " batch"],
        cache: TransformerLensKeyValueCache | None = None,
    ) -> Float[Tensor, "batch vocab"]:  # fmt: skip
        """Logits at position ``last[b]`` of each row, unembedding only those positions."""
        model = self.model
        resid = model(tokens, attention_mask=mask, past_kv_cache=cache, stop_at_layer=model.cfg.n_layers)
        picked = model.ln_final(resid[torch.arange(len(tokens), device=resid.device), last][:, None])[:, 0]
        # W_U directly: TransformerLens's Unembed copies the transposed [d_model, vocab] matrix on
        # every call, which on CPU costs a decode step more than its own matmuls.
        return picked @ model.W_U + model.b_U

    def _generate_batch(
        self, rows: list[list[int]], max_tokens: int, temperature: float, seed: int, top_k: int
    ) -> list[Reply]:
        """One left-padded, KV-cached batch; ``top_k`` < 0 records no logprobs."""
        batch = pad_rows(Tokenized(ids=rows, has_bos=False, truncated=[]), range(len(rows)),
                         max(len(r) for r in rows), "left", False, 0)  # fmt: skip
        tokens, mask = batch.tokens.to(self.device), batch.attention_mask.to(self.device)
        last = torch.full((len(rows),), tokens.shape[1] - 1, device=self.device)
        cache = TransformerLensKeyValueCache.init_cache(self.model.cfg, self.device, len(rows))
        noise = torch.Generator().manual_seed(seed)
        record = _Record(len(rows), self.stop_ids, self.token_strings() if top_k >= 0 else None, top_k)
        with torch.inference_mode():
            for _ in range(max_tokens):
                logits = self._last_logits(tokens, mask, last, cache).float()
                picked = _pick(logits, temperature, noise)
                if record.add(picked, logits):
                    break
                tokens, mask = picked[:, None], torch.ones_like(picked)[:, None]
                last = torch.zeros_like(last)
        return [
            Reply(text=str(self.tokenizer.decode(ids, skip_special_tokens=True)), token_ids=tuple(ids),
                  prompt_tokens=len(row), finish_reason="stop" if stopped else "length", logprobs=tuple(lps))
            for row, ids, stopped, lps in zip(rows, record.ids, record.stopped, record.logprobs, strict=True)
        ]  # fmt: skip


def _pick(logits: Float[Tensor, "batch vocab"], temperature: float, noise: torch.Generator) -> Int[Tensor, " batch"]:
    """Greedy at temperature 0; else a softmax(logits / T) sample by the Gumbel-max trick, with
    one noise vector per step shared by every row (so a row's draw does not depend on its batch)."""
    if temperature == 0:
        return logits.argmax(-1)
    uniform = torch.rand(logits.shape[-1], generator=noise).clamp_(1e-20, 1.0).to(logits.device)
    return (logits / temperature - torch.log(-torch.log(uniform))).argmax(-1)


class _Record:
    """Generated ids per row until each row's first stop token, with logprobs when asked for."""

    def __init__(self, n: int, stop_ids: frozenset[int], vocab: list[str] | None, top_k: int) -> None:
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
        self.stopped = [False] * n
        self.stop_ids, self.vocab, self.top_k = stop_ids, vocab, top_k

    def add(self, picked: Int[Tensor, " batch"], logits: Float[Tensor, "batch vocab"]) -> bool:
        """Add one step; True once every row has stopped. The stop token gets logprobs too (a
        reply that ends at once still says how likely each first token was), but no id."""
        tops: list[tuple[tuple[int, str, float], ...]] = [()] * len(picked)
        chosen: list[float] = []
        if self.vocab is not None:
            logp = logits.log_softmax(-1)
            chosen = logp.gather(-1, picked[:, None])[:, 0].tolist()
            if self.top_k > 0:
                values, indices = logp.topk(self.top_k, dim=-1)
                tops = [tuple((i, self.vocab[i], v) for i, v in zip(ix, vs, strict=True))
                        for ix, vs in zip(indices.tolist(), values.tolist(), strict=True)]  # fmt: skip
        for row, token in enumerate(picked.tolist()):
            if self.stopped[row]:
                continue
            if self.vocab is not None:
                self.logprobs[row].append(TokenLogprob(token, self.vocab[token], chosen[row], tops[row]))
            if token in self.stop_ids:
                self.stopped[row] = True
            else:
                self.ids[row].append(token)
        return all(self.stopped)
