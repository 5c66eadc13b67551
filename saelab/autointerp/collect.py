"""The examples pass: one streamed, memory-bounded pass over a source that keeps, for every
requested feature, its top windows, a uniform sample of its activating windows (for the
quantile-spread positives), a uniform sample of its non-activating windows, and its hard
negatives. Per chunk it costs one read (store) or one model forward (texts) plus one
encode; memory is fixed by the selection sizes, not by the corpus.

A pass checkpoints every ``checkpoint_every_s`` seconds and when interrupted, and the next
call with the same source, decomposition, features and config resumes after the last
finished chunk. The finished result is cached as JSON lines (see ``example_set.py``).

Suffixes: ``N`` windows in a chunk, ``W`` tokens per window, ``F`` all features,
``S`` the selected features, ``M`` neighbours.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from saelab._util.keys import stable_hash
from saelab._util.paths import cache_dir
from saelab.analysis._checks import check_feature_ids
from saelab.autointerp.assemble import assemble
from saelab.autointerp.buffers import Selection
from saelab.autointerp.calibrate import Calibration, calibrate, signs
from saelab.autointerp.config import ExamplesConfig
from saelab.autointerp.decompositions import Decomposition
from saelab.autointerp.example_set import ExampleSet
from saelab.autointerp.pass_state import Observer, PassState, load_partial, restore, save_partial, snapshot
from saelab.autointerp.sources import ActivationSource, Chunk

SELECTIONS = ("top", "activating", "non_activating", "hard")


def examples_key(source: ActivationSource, decomposition: Decomposition, features: Sequence[int],
                 config: ExamplesConfig) -> str:  # fmt: skip
    return stable_hash(["examples", 1, source.key, decomposition.key, list(features), config.content_dict()])


def collect_examples(
    source: ActivationSource,
    decomposition: Decomposition,
    model: HookedTransformer,
    *,
    features: Sequence[int] | None = None,
    config: ExamplesConfig | None = None,
    cache: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> ExampleSet:
    """The :class:`~saelab.autointerp.feature_examples.FeatureExamples` of ``features`` (None: all)
    of ``decomposition`` over ``source``; ``model`` supplies the tokenizer for the contexts."""
    cfg = config or ExamplesConfig()
    selected = _check_features(features, decomposition.n_features)
    key = examples_key(source, decomposition, selected, cfg)
    final = examples_path(key)
    if cache and final.is_file():
        return ExampleSet.load(final)
    started = time.perf_counter()
    state = run_pass(source, decomposition, model, selected, cfg, cache=cache, progress=progress, device=device)
    return finish_examples(state, source, decomposition, model, selected, cfg, seconds=time.perf_counter() - started,
                           cache=cache)  # fmt: skip


def examples_path(key: str) -> Path:
    return cache_dir() / "autointerp" / "examples" / f"{key}.jsonl"


def finish_examples(state: PassState, source: ActivationSource, decomposition: Decomposition,
                    model: HookedTransformer, selected: list[int], cfg: ExamplesConfig, *, seconds: float,
                    cache: bool = True) -> ExampleSet:  # fmt: skip
    """The examples of a finished pass, saved where :func:`collect_examples` looks for them."""
    examples = assemble(state, source, model, decomposition, selected, cfg)
    key = examples_key(source, decomposition, selected, cfg)
    result = ExampleSet(key, decomposition.name, source.key, cfg, state.n_tokens, examples, seconds=seconds)
    if cache:
        result.save(examples_path(key))
    return result


def run_pass(
    source: ActivationSource,
    decomposition: Decomposition,
    model: HookedTransformer,
    selected: list[int],
    cfg: ExamplesConfig,
    *,
    observers: Sequence[Observer] = (),
    encode_all: bool = False,
    cache: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> PassState:
    """The pass itself, resumable: its selections of ``selected`` (checked ids), with
    ``observers`` fed every chunk. ``encode_all`` hands the observers every feature's
    activations, not only the selected ones and their neighbours."""
    observers = list(observers)
    key = stable_hash([examples_key(source, decomposition, selected, cfg), [o.key for o in observers], encode_all])
    partial = cache_dir() / "autointerp" / "examples" / f"{key}.partial.pt"
    dev = torch.device(device) if device is not None else _default_device(model)
    state = load_partial(partial, dev, observers) if cache else None
    # The calibration chunks are kept and served again by the pass: reading a store twice is
    # cheap, but running the model twice over texts is not.
    kept: dict[int, Chunk] = {}
    if state is None:
        state = _start(_Remember(source, kept), decomposition, selected, cfg, dev)
    cols = _columns(torch.tensor(selected, device=dev), state.calibration,
                    decomposition.n_features if encode_all else None)  # fmt: skip
    _run(_Remember(source, kept, serve=True), decomposition, cols, cfg, state, observers, partial if cache else None,
         progress, dev)  # fmt: skip
    if cache:
        partial.unlink(missing_ok=True)
    return state


def _check_features(features: Sequence[int] | None, n_features: int) -> list[int]:
    """All features for None, else the ids checked (non-empty, in range, no duplicates)."""
    return list(range(n_features)) if features is None else check_feature_ids(features, n_features)


def _default_device(model: HookedTransformer) -> torch.device:
    return torch.device(model.cfg.device) if model.cfg.device is not None else torch.device("cpu")


class _Remember:
    """A source that remembers the chunks it served (``serve=False``) or serves remembered
    chunks once before reading again (``serve=True``)."""

    def __init__(self, source: ActivationSource, kept: dict[int, Chunk], serve: bool = False) -> None:
        self.source, self.kept, self.serve = source, kept, serve
        self.n_chunks, self.n_tokens, self.key = source.n_chunks, source.n_tokens, source.key

    def chunk(self, index: int) -> Chunk:
        if self.serve:
            return self.kept.pop(index, None) or self.source.chunk(index)
        self.kept[index] = chunk = self.source.chunk(index)
        return chunk

    def token_ids(self, seq: int) -> list[int]:
        return self.source.token_ids(seq)


def _start(source: ActivationSource, dec: Decomposition, selected: list[int], cfg: ExamplesConfig,
           dev: torch.device) -> PassState:  # fmt: skip
    """Calibrate on a few chunks spread over the source, then start with empty selections."""
    picks = sorted({round(i * (source.n_chunks - 1) / max(1, cfg.calibration_chunks - 1))
                    for i in range(min(cfg.calibration_chunks, source.n_chunks))})  # fmt: skip
    tokens, highs, lows = [], [], []
    for index in picks:
        full, valid = _encode(source.chunk(index), dec, None, cfg.window, dev)
        tokens.append(full[valid])
        cut = _windows(full, valid, cfg.window, dec.sparse)
        highs.append(cut.peak_NF)
        if not dec.sparse:
            # A flipped direction's peak is minus its trough; keep both so the flip costs no re-encode.
            lows.append(cut.acts_NWF.masked_fill(~cut.mask_NW[:, :, None], float("inf")).min(dim=1).values)
    acts = torch.cat(tokens)
    sign = signs(dec, acts)
    peaks = torch.where(sign > 0, torch.cat(highs), -torch.cat(lows)) if lows else torch.cat(highs)
    sel = torch.tensor(selected, device=dev)
    cal = calibrate(dec, sign, acts * sign, peaks, sel, dense_rate=cfg.dense_rate, n_neighbours=cfg.n_neighbours,
                    seed=cfg.seed)  # fmt: skip
    sizes = {"top": cfg.n_explain, "activating": cfg.reservoir, "non_activating": 2 * cfg.n_negatives,
             "hard": 2 * cfg.n_hard_negatives}  # fmt: skip
    selections = {name: Selection.empty(sizes[name], cfg.window, len(selected), dev) for name in SELECTIONS}
    return PassState(0, cal, selections, [], torch.zeros(len(selected), device=dev), 0)


def _encode(chunk: Chunk, dec: Decomposition, sign: Tensor | None, window: int, dev: torch.device,
            columns: Tensor | None = None) -> tuple[Float[Tensor, "B P C"], Bool[Tensor, "B P"]]:  # fmt: skip
    """Features ``columns`` (None: all) on every valid position, laid out ``[batch, padded
    pos, C]`` (0 elsewhere), with positions padded up to a whole number of windows. Only the
    columns the pass needs are scattered: for a 200-feature pass over a 4608-feature SAE
    the scatter and the window maxima then cost a small fraction of the encode."""
    acts, valid = chunk.acts.to(dev), chunk.valid.to(dev)
    b, length = valid.shape
    padded = math.ceil(length / window) * window
    encoded = dec.encode(acts[valid])
    if columns is not None:
        encoded = encoded[:, columns]
    if sign is not None and not dec.sparse:
        encoded = encoded * (sign if columns is None else sign[columns])
    full = torch.zeros((b, padded, encoded.shape[1]), device=dev)
    mask = torch.zeros((b, padded), dtype=torch.bool, device=dev)
    mask[:, :length] = valid
    full[mask] = encoded
    return full, mask


class Columns(NamedTuple):
    """The features a pass encodes: the selected ones and their neighbours."""

    index: Int[Tensor, " C"]
    selected: Int[Tensor, " S"]
    """Positions of the selected features within ``index``."""
    neighbours: Int[Tensor, "S M"]
    """Positions of each selected feature's neighbours within ``index``."""


def _columns(sel: Tensor, cal: Calibration, n_features: int | None = None) -> Columns:
    """The selected features and their neighbours, or all ``n_features`` when given."""
    every = [torch.arange(n_features, device=sel.device)] if n_features is not None else []
    index, inverse = torch.unique(torch.cat([sel, cal.neighbours_SM.flatten(), *every]), return_inverse=True)
    n_neighbours = cal.neighbours_SM.numel()
    neighbours = inverse[len(sel) : len(sel) + n_neighbours].reshape(cal.neighbours_SM.shape)
    return Columns(index, inverse[: len(sel)], neighbours)


class Windows(NamedTuple):
    """A chunk cut into windows, empty ones (no valid token) left out."""

    acts_NWF: Float[Tensor, "N W F"]
    mask_NW: Bool[Tensor, "N W"]
    peak_NF: Float[Tensor, "N F"]
    """Each window's peak per feature over its valid tokens."""
    rows: Int[Tensor, " N"]
    """Which window of the chunk (row-major over batch, window) each one is."""


def _windows(full: Tensor, mask: Tensor, window: int, nonnegative: bool) -> Windows:
    """``nonnegative``: every activation is >= 0 (an SAE's are), so the zeros written on
    invalid positions cannot raise a window's peak and need no masking (a full-width copy
    of the chunk saved)."""
    b, p, f = full.shape
    acts = full.reshape(b * (p // window), window, f)
    wmask = mask.reshape(-1, window)
    rows = wmask.any(dim=1).nonzero().flatten()
    acts, wmask = acts[rows], wmask[rows]
    masked = acts if nonnegative else acts.masked_fill(~wmask[:, :, None], float("-inf"))
    return Windows(acts, wmask, masked.max(dim=1).values, rows)


def _run(source: ActivationSource, dec: Decomposition, cols: Columns, cfg: ExamplesConfig, state: PassState,
         observers: list[Observer], partial: Path | None, progress: bool, dev: torch.device) -> None:  # fmt: skip
    """Process the chunks not done yet, checkpointing on a timer and on interruption."""
    last_save = time.monotonic()
    bar = tqdm(total=source.n_tokens, initial=state.n_tokens, unit="tok", desc=f"examples ({dec.name})",
               disable=not progress)  # fmt: skip
    try:
        while state.next_chunk < source.n_chunks:
            saved, seen = snapshot(state), [o.state() for o in observers]
            try:
                _process(source.chunk(state.next_chunk), dec, cols, cfg, state, observers, dev)
            except BaseException:
                restore(state, saved)  # a chunk counts only once it is wholly merged
                for observer, before in zip(observers, seen, strict=True):
                    observer.load_state(before)
                raise
            bar.update(state.n_tokens - bar.n)
            if partial is not None and time.monotonic() - last_save > cfg.checkpoint_every_s:
                save_partial(partial, state, observers)
                last_save = time.monotonic()
    except BaseException:
        if partial is not None and state.next_chunk > 0:
            save_partial(partial, state, observers)  # an interrupted pass resumes here next time
        raise
    finally:
        bar.close()


def _process(chunk: Chunk, dec: Decomposition, cols: Columns, cfg: ExamplesConfig, state: PassState,
             observers: list[Observer], dev: torch.device) -> None:  # fmt: skip
    cal = state.calibration
    # One seed per chunk: a resumed pass draws exactly what an uninterrupted one would.
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.next_chunk)
    full, valid = _encode(chunk, dec, cal.sign_F, cfg.window, dev, cols.index)
    cut = _windows(full, valid, cfg.window, dec.sparse)
    # Observers see the chunk last, once everything else merged: a chunk that fails is undone
    # by restoring the selections, and the observers never saw it.
    seen = (full[valid], chunk.acts.to(dev)[chunk.valid.to(dev)]) if observers else None
    del full
    n = len(cut.rows)
    threshold = cal.threshold_F[cols.index][cols.selected]
    # When every encoded column is selected in order (a whole-SAE pass), no copy is needed.
    order = torch.arange(len(cols.index), device=dev)
    whole = len(cols.selected) == len(cols.index) and bool((cols.selected == order).all())
    acts = cut.acts_NWF if whole else cut.acts_NWF[:, :, cols.selected]
    peak = cut.peak_NF if whole else cut.peak_NF[:, cols.selected]
    fires = peak > threshold
    ids = torch.arange(state.n_windows, state.n_windows + n, device=dev)
    minus_inf = torch.tensor(float("-inf"), device=dev)
    key = torch.rand((n, len(cols.selected)), generator=gen).to(dev)  # bottom-k sampling = top-k of a random key
    sels = state.selections
    sels["top"].merge(torch.where(fires, peak, minus_inf), peak, ids, acts)
    sels["activating"].merge(torch.where(fires, key, minus_inf), peak, ids, acts)
    sels["non_activating"].merge(torch.where(fires, minus_inf, key), peak, ids, acts)
    if cols.neighbours.shape[1] and cfg.n_hard_negatives:
        scaled = cut.peak_NF / cal.scale_F[cols.index]
        neighbour = scaled[:, cols.neighbours].amax(dim=2)  # [N, S]: the strongest neighbour
        sels["hard"].merge(torch.where(fires, minus_inf, neighbour), peak, ids, acts)
    above = acts > threshold
    # An SAE fires above 0, and invalid positions hold 0: they never count, mask or not.
    tokens_fired = (above if dec.sparse else above & cut.mask_NW[:, :, None]).sum(dim=(0, 1))
    state.fired_S = state.fired_S + tokens_fired
    state.windows.append(_window_table(chunk, cut, cfg.window, valid.shape[1]))
    state.n_tokens += int(cut.mask_NW.sum())
    if seen is not None:
        for observer in observers:
            observer.update(seen[0], cols.index, seen[1])
    state.next_chunk += 1


def _window_table(chunk: Chunk, cut: Windows, window: int, padded: int) -> Int[Tensor, "N 4"]:
    """(sequence, start position, first valid offset, end offset) of each kept window."""
    per_row = padded // window
    seq = chunk.seq.to(cut.rows.device)[cut.rows // per_row]
    start = (cut.rows % per_row) * window
    offsets = torch.arange(window, device=cut.rows.device)
    first = torch.where(cut.mask_NW, offsets, window).amin(dim=1)
    end = torch.where(cut.mask_NW, offsets + 1, 0).amax(dim=1)
    return torch.stack([seq, start, first, end], dim=1).cpu()
