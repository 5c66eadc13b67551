"""What an examples pass has gathered so far, how it is checkpointed, and what else may ride
along on it.

An :class:`Observer` sees every chunk's encoded activations once, after the selections are
merged, and keeps its own fixed-size statistics (the dashboards' activation histograms and
co-activation counts). Its state is saved with the pass's checkpoint, so a resumed pass
resumes the observers too, and its ``key`` joins the checkpoint's key, so a pass with other
observers never resumes from this one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from jaxtyping import Float, Int
from torch import Tensor

from saelab.autointerp.buffers import Selection
from saelab.autointerp.calibrate import Calibration


class Observer(Protocol):
    key: str
    """What the observer computes, with its settings (joins the checkpoint's key)."""

    def update(self, acts_TC: Float[Tensor, "T C"], columns: Int[Tensor, " C"], inputs_TD: Tensor) -> None:
        """One chunk: ``acts_TC`` are the encoded features ``columns`` on the chunk's valid
        tokens, ``inputs_TD`` the activations they were encoded from. It must replace its
        tensors rather than write into them: the pass undoes a failed chunk by loading the
        ``state()`` it took before."""
        ...

    def state(self) -> dict[str, Tensor]: ...

    def load_state(self, state: dict[str, Tensor]) -> None: ...


@dataclass
class PassState:
    """Everything a pass has gathered so far; saved as a checkpoint and resumed from."""

    next_chunk: int
    calibration: Calibration
    selections: dict[str, Selection]
    windows: list[Tensor]
    """Per chunk, ``[N, 4]`` rows (sequence, start, first valid offset, end offset)."""
    fired_S: Tensor
    n_tokens: int

    @property
    def n_windows(self) -> int:
        return sum(len(w) for w in self.windows)


def snapshot(state: PassState) -> dict:
    """References to the state's tensors: merging replaces them rather than writing in place,
    so keeping the old references is enough to undo a half-merged chunk."""
    return {"selections": {name: dict(vars(sel)) for name, sel in state.selections.items()},
            "fired": state.fired_S, "n_windows": len(state.windows), "n_tokens": state.n_tokens,
            "next_chunk": state.next_chunk}  # fmt: skip


def restore(state: PassState, saved: dict) -> None:
    for name, fields in saved["selections"].items():
        vars(state.selections[name]).update(fields)
    state.fired_S = saved["fired"]
    del state.windows[saved["n_windows"] :]
    state.n_tokens, state.next_chunk = saved["n_tokens"], saved["next_chunk"]


def save_partial(path: Path, state: PassState, observers: list[Observer]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "next_chunk": state.next_chunk, "n_tokens": state.n_tokens, "fired": state.fired_S.cpu(),
        "calibration": state.calibration.state(), "windows": torch.cat(state.windows) if state.windows else None,
        "selections": {name: sel.state() for name, sel in state.selections.items()},
        "observers": [{k: v.cpu() for k, v in o.state().items()} for o in observers],
    }  # fmt: skip
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_partial(path: Path, dev: torch.device, observers: list[Observer]) -> PassState | None:
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    windows = [payload["windows"]] if payload["windows"] is not None else []
    for observer, saved in zip(observers, payload.get("observers", []), strict=True):
        observer.load_state(saved)
    return PassState(
        payload["next_chunk"], Calibration.from_state(payload["calibration"], dev),
        {name: Selection.from_state(s, dev) for name, s in payload["selections"].items()},
        windows, payload["fired"].to(dev), payload["n_tokens"],
    )  # fmt: skip
