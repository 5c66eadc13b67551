"""Sampling continuations with and without steering, with common random numbers.

Every row of a batch continues the *same* prompt (no padding), and each step samples with
the same Gumbel noise for every row (``argmax(logits / T + g)``): a baseline row and a steered
row then draw identical randomness, so any difference between them comes from the edit, not
from the dice. ``temperature=0`` is greedy.

The edit reaches every position: the prompt (BOS aside) in the prefill pass and each new
token in its own single-token pass when the KV cache is used (hooks that skip single-token
passes leave cached generation unsteered; a test checks cached and uncached runs agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

from saelab.extract.batches import pad_rows
from saelab.extract.tokens import Tokenized, tokenize, tokenizer_of
from saelab.interventions.edits import check_features, check_strengths
from saelab.interventions.feature_scale import FeatureStats, feature_stats
from saelab.interventions.splice import FeatureEdit, edit_mask, spliced
from saelab.interventions.steering import STEER_MODES, SteerMode, StrengthUnit, raw_strengths

DEFAULT_NEW_TOKENS = 32
MAX_ROWS = 128
"""Rows sampled in one batch at most: bounds the KV cache and the logits. Batches are split
evenly (a 100-row phase runs as one batch, not 96 + 4): on CPU a generation step costs
nearly as much for 4 rows as for 100, so a small remainder batch would cost a third of the
whole phase."""


class EditedRunner(Protocol):
    """What runs an edited forward pass: a :class:`Splice`, or any edit that takes a mask of
    the positions to edit (``[rows, pos]``) with each pass."""

    def run(self, tokens: Tensor, *, edit_mask: Tensor | None = None, **kwargs: Any) -> Tensor: ...


@dataclass(frozen=True)
class Generation:
    """A baseline and a steered continuation of one prompt, sampled with the same seed."""

    prompt: str
    baseline: str
    """The unsteered continuation (the prompt not included)."""
    steered: str
    baseline_ids: list[int]
    steered_ids: list[int]
    edits: dict[int, float]
    """The edit as raw activation values ``{feature: value}``."""
    mode: str
    seed: int
    temperature: float

    def _repr_html_(self) -> str:
        from html import escape

        cell = "padding:6px 10px;vertical-align:top;white-space:pre-wrap;border:1px solid #ddd"
        return (
            f"<div><b>Prompt:</b> {escape(self.prompt)}</div><table style='border-collapse:collapse'>"
            f"<tr><th>baseline</th><th>steered ({escape(self.mode)} {self.edits})</th></tr>"
            f"<tr><td style='{cell}'>{escape(self.baseline)}</td>"
            f"<td style='{cell}'>{escape(self.steered)}</td></tr></table>"
        )


def prompt_ids(model: HookedTransformer, prompt: str) -> list[int]:
    """The prompt's token ids under saelab's tokenization policy (BOS first), or a clear error."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt is empty; give the model some text to continue")
    return tokenize(model, [prompt]).ids[0]


def rowwise_edit(features: Sequence[int], values: Float[Tensor, "rows n"], mode: SteerMode) -> FeatureEdit:
    """An edit with its own strengths per batch row: ``add`` adds them, ``clamp`` sets them.

    A NaN leaves that feature of that row alone, so rows can steer different features.
    """
    index = torch.as_tensor(list(features), dtype=torch.long)
    if values.ndim != 2 or values.shape[1] != index.numel():
        raise ValueError(f"values must be [rows, {index.numel()}], got {tuple(values.shape)}")

    def edit(feats: Float[Tensor, "batch pos d_sae"]) -> Tensor:
        out = feats.clone()
        vals = values.to(device=feats.device, dtype=feats.dtype)[:, None, :]  # [rows, 1, n]
        current = out[..., index]
        target = current + vals if mode == "add" else vals.expand_as(current)
        out[..., index] = torch.where(torch.isnan(vals), current, target)
        return out

    return edit


def sample_rows(
    model: HookedTransformer,
    rows: Sequence[list[int]],
    *,
    groups: Sequence[int] | None = None,
    splice: EditedRunner | None = None,
    edited_rows: Tensor | None = None,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    temperature: float = 1.0,
    seed: int = 0,
    use_kv_cache: bool = True,
) -> Int[Tensor, "rows new"]:
    """Continue each row's prompt ids (BOS first), left-padded into one batch.

    Rows with the same ``groups`` id (default: rows with the same prompt) share their
    per-step Gumbel noise, seeded by ``seed`` and the id. With ``splice`` installed, rows
    where ``edited_rows`` is True are edited at every real position but BOS; the others run
    clean.
    """
    _check_sampling(max_new_tokens, temperature)
    device = torch.device(model.cfg.device or "cpu")
    tokens, attention = left_pad(rows, device)
    noise = _GroupNoise(_group_ids(rows, groups), seed)
    edited = torch.ones(len(rows), dtype=torch.bool) if edited_rows is None else edited_rows.bool().cpu()
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, len(rows)) if use_kv_cache else None
    new: list[Tensor] = []
    with torch.inference_mode():
        for step in range(max_new_tokens):
            first = cache is None or step == 0
            step_tokens = tokens if first else tokens[:, -1:]
            step_mask = attention if first else attention[:, -1:]
            edit_mask = _edit_mask(step_mask, edited, prefill=first)
            kwargs = {"attention_mask": step_mask, **({"past_kv_cache": cache} if cache is not None else {})}
            if splice is not None:
                logits = splice.run(step_tokens, edit_mask=edit_mask, **kwargs)
            else:
                logits = model(step_tokens, **kwargs)
            nxt = _sample(logits[:, -1].float(), temperature, noise).to(device)
            new.append(nxt.cpu())
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
    return torch.stack(new, dim=1)


def left_pad(rows: Sequence[list[int]], device: str | torch.device) -> tuple[Tensor, Tensor]:
    """Token rows left-padded into one batch (the last position is every row's last token),
    and their attention mask, on ``device``."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every row needs at least one prompt token")
    tokenized = Tokenized(ids=[list(r) for r in rows], has_bos=False, truncated=[])
    batch = pad_rows(tokenized, range(len(rows)), max(len(r) for r in rows), "left", False, 0)
    return batch.tokens.to(device), batch.attention_mask.to(device)


def _group_ids(rows: Sequence[list[int]], groups: Sequence[int] | None) -> list[int]:
    if groups is None:
        seen: dict[tuple[int, ...], int] = {}
        return [seen.setdefault(tuple(r), len(seen)) for r in rows]
    if len(groups) != len(rows):
        raise ValueError(f"{len(groups)} group ids for {len(rows)} rows")
    return [int(g) for g in groups]


def _edit_mask(step_mask: Tensor, edited: Tensor, *, prefill: bool) -> Tensor:
    """Real positions of edited rows, minus each row's BOS (its first real token) in a prefill."""
    allowed = edit_mask(step_mask.cpu()) if prefill else step_mask.bool().cpu()
    return allowed & edited[:, None]


def _sample(logits: Float[Tensor, "rows vocab"], temperature: float, noise: _GroupNoise) -> Int[Tensor, " rows"]:
    if temperature == 0:
        return logits.argmax(dim=-1)
    return (logits / temperature + noise.next(logits.shape[-1]).to(logits.device)).argmax(dim=-1)


class _GroupNoise:
    """Gumbel noise per step, one draw per group of rows, from a generator per group id.

    Seeding each group separately makes a group's noise independent of which other groups
    share its batch, so a prompt sampled in two calls sees the same numbers both times.
    """

    def __init__(self, groups: Sequence[int], seed: int) -> None:
        ids = torch.as_tensor(list(groups), dtype=torch.long)
        self.unique, self.inverse = torch.unique(ids, return_inverse=True)
        self.gens = [torch.Generator().manual_seed(int(seed) * 1_000_003 + int(g)) for g in self.unique]

    def next(self, vocab: int) -> Float[Tensor, "rows vocab"]:
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.gens]).clamp_(1e-20, 1.0)
        return -torch.log(-torch.log(uniform))[self.inverse]


def _check_sampling(max_new_tokens: int, temperature: float) -> None:
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def decode_continuation(model: HookedTransformer, ids: Sequence[int]) -> tuple[list[int], str]:
    """Ids up to (not including) the first EOS, and their text."""
    tokenizer = tokenizer_of(model)
    eos = tokenizer.eos_token_id
    kept = list(ids)
    if eos is not None and eos in kept:
        kept = kept[: kept.index(eos)]
    return kept, str(tokenizer.decode(kept))


def generate(
    model: HookedTransformer,
    prompt: str,
    *,
    sae: SAE,
    edits: Mapping[int, float],
    mode: SteerMode = "add",
    unit: StrengthUnit = "max",
    stats: FeatureStats | None = None,
    seed: int = 0,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    temperature: float = 1.0,
    use_kv_cache: bool = True,
) -> Generation:
    """The baseline and the steered continuation of ``prompt``, side by side, same seed.

    ``edits`` is ``{feature: strength}`` as in :func:`~saelab.interventions.steer`.
    """
    ids = prompt_ids(model, prompt)
    if mode not in STEER_MODES:
        raise ValueError(f"mode must be one of {list(STEER_MODES)}, got {mode!r}")
    check_features(edits, sae.cfg.d_sae)
    check_strengths(edits.values())
    if unit == "max" and stats is None:
        stats = feature_stats(model, sae)
    raw = raw_strengths(dict(edits), sae, unit=unit, stats=stats)
    values = torch.tensor([list(raw.values())] * 2)
    with spliced(model, sae, rowwise_edit(list(raw), values, mode)) as installed:
        out = sample_rows(
            model, [ids, ids], splice=installed, edited_rows=torch.tensor([False, True]),
            max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, use_kv_cache=use_kv_cache,
        )  # fmt: skip
    (base_ids, base), (steer_ids, steered) = (decode_continuation(model, row.tolist()) for row in out)
    return Generation(prompt, base, steered, base_ids, steer_ids, raw, mode, int(seed), float(temperature))


def even_batches(n_rows: int, max_rows: int = MAX_ROWS) -> range:
    """Start rows of the fewest batches of at most ``max_rows`` rows, sized evenly."""
    if n_rows == 0:
        return range(0)
    n_batches = -(-n_rows // max_rows)
    return range(0, n_rows, -(-n_rows // n_batches))


def decode_rows(model: HookedTransformer, out: Int[Tensor, "rows new"]) -> tuple[list[str], list[list[int]]]:
    """Each sampled row's text (up to its first EOS) and the ids it is scored on: through the
    first EOS, since stopping is part of what the model chose to write."""
    texts, ids = [], []
    for row in out.tolist():
        kept, text = decode_continuation(model, row)
        ids.append(row[: len(kept) + 1] if len(kept) < len(row) else kept)
        texts.append(text)
    return texts, ids
