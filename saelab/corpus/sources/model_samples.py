"""Source ``model_samples`` (only when ``CorpusConfig.model_samples > 0``): continuations
the model itself writes from prompts for registers the other sources lack (chat, social
media, formal letters, e-mail, reviews)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import cast

import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab._util.atomic import atomic_write_text
from saelab._util.keys import model_identity, stable_hash
from saelab._util.paths import cache_dir
from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter
from saelab.extract.tokens import bos_token_id, encode_texts, tokenizer_of

DEFAULT_SAMPLE_PROMPTS: tuple[str, ...] = (
    # conversational
    "A: Hey! How was your weekend?\nB:",
    "So I was talking to my mom on the phone yesterday, and she said",
    "Honestly, I don't know what to do about my roommate. Every night he",
    "Q: What's the best way to learn to cook if you've never cooked before?\nA:",
    # social media
    "Just finished my first half marathon!!! 🏃‍♀️",
    "Can we talk about how good this coffee place is?? #coffee",
    "Thread 🧵: 10 things I wish I knew before moving to a new city.\n\n1.",
    "lol my cat just knocked my phone off the table AGAIN",
    "Review: ★★☆☆☆ Ordered the large pizza and",
    # formal writing
    "Dear Ms. Thompson,\n\nI am writing to inform you that",
    "Dear Hiring Manager,\n\nI am pleased to submit my application for",
    "To whom it may concern,\n\nThis letter confirms that",
    "MEMORANDUM\n\nTo: All Staff\nFrom: Human Resources\nSubject: Updated leave policy\n\n",
    "Subject: Follow-up on our meeting\n\nHi Daniel,\n\nThank you for taking the time to",
    "The Board of Directors is pleased to announce that",
    # news and everyday prose
    "LONDON (Reuters) - ",
    "Local residents gathered on Saturday to",
    "Here is my grandmother's recipe for apple pie. First,",
)


def sample_model_texts(
    model: HookedTransformer,
    prompts: Sequence[str] = DEFAULT_SAMPLE_PROMPTS,
    n: int = 64,
    max_new_tokens: int = 128,
    seed: int = 0,
    *,
    temperature: float = 0.8,
    top_p: float = 0.95,
    cache: bool = True,
    progress: bool = False,
) -> list[str]:
    """``n`` texts the model writes as continuations of ``prompts`` (split as evenly as
    possible across the prompts, in order).

    Each text is the prompt plus the sampled continuation, cut at the first end-of-text.
    Results are cached under ``$SAELAB_CACHE/corpus``, keyed on the model's identity and
    every argument, so a second call (or a rebuilt corpus) costs nothing.
    """
    if n < 0 or max_new_tokens < 1 or not prompts:
        raise ValueError(
            f"Need n >= 0, max_new_tokens >= 1 and at least one prompt; got n={n}, "
            f"max_new_tokens={max_new_tokens}, {len(prompts)} prompts"
        )
    key = {
        "model": model_identity(model),
        "prompts": list(prompts),
        "n": n,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "temperature": temperature,
        "top_p": top_p,
    }
    path = cache_dir() / "corpus" / f"samples-{stable_hash(key)}.json"
    if cache and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["texts"]
    per_prompt = [len(range(i, n, len(prompts))) for i in range(len(prompts))]
    texts: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for prompt, k in tqdm(list(zip(prompts, per_prompt, strict=True)), desc="model samples", disable=not progress):
            if k:
                texts.extend(_generate(model, prompt, k, max_new_tokens, temperature, top_p))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "texts": texts}, ensure_ascii=False))
    return texts


def _generate(
    model: HookedTransformer, prompt: str, k: int, max_new_tokens: int, temperature: float, top_p: float
) -> list[str]:
    tokenizer = tokenizer_of(model)
    bos_id = bos_token_id(model)
    bos = [bos_id] if bos_id is not None else []
    ids = torch.tensor([bos + encode_texts(tokenizer, [prompt])[0]] * k, device=model.cfg.device)
    generated = model.generate(
        ids,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        stop_at_eos=True,
        verbose=False,
    )
    out = cast(torch.Tensor, generated)  # cast: token ids in, token ids out (return_type "input")
    texts = []
    stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if isinstance(t, int)}
    for row in out[:, len(bos) :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tokenizer.decode(row[:cut]))
    return texts


def documents(cfg: CorpusConfig, filt: DocumentFilter, model: HookedTransformer | None) -> Iterator[Document] | None:
    if cfg.model_samples <= 0:
        return None
    if model is None:
        raise ValueError(
            f"CorpusConfig.model_samples={cfg.model_samples} needs the model to write them: pass "
            "model=... (build_store does), or set model_samples=0."
        )
    texts = sample_model_texts(model, n=cfg.model_samples, max_new_tokens=cfg.sample_max_new_tokens, seed=cfg.seed)

    def gen() -> Iterator[Document]:
        for i, raw in enumerate(texts):
            text = filt(raw)
            if text is not None:
                yield Document(text, "model_samples", f"sample-{i}")

    return gen()
