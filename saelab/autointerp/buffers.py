"""Per-feature running selections of windows, merged one chunk at a time.

Every selection the examples pass keeps is "the ``k`` windows with the highest score, per
feature": the top windows (score = the window's peak activation), a uniform sample of the
activating windows and one of the non-activating windows (score = a random key, the
bottom-k sampling trick, which merges exactly like a top-k), and the hard negatives
(score = how strongly a neighbour fires). So one merge serves all four, and memory is
``k x window x n_features`` per selection whatever the corpus length.

Suffixes: ``K`` kept entries, ``N`` new windows, ``W`` tokens per window, ``F`` features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class Selection:
    """The kept windows of every feature; entries with score ``-inf`` are empty."""

    score_KF: Float[Tensor, "K F"]
    value_KF: Float[Tensor, "K F"]
    """The window's peak activation of the feature (what quantiles and sorting use)."""
    window_KF: Int[Tensor, "K F"]
    """Global window ids (index into the pass's window table)."""
    acts_KWF: Float[Tensor, "K W F"]
    """The feature's activation on every token of the window (fp16: only for display)."""

    @classmethod
    def empty(cls, k: int, window: int, n_features: int, device: torch.device) -> Selection:
        return cls(
            torch.full((k, n_features), float("-inf"), device=device),
            torch.zeros((k, n_features), device=device),
            torch.full((k, n_features), -1, dtype=torch.long, device=device),
            torch.zeros((k, window, n_features), dtype=torch.float16, device=device),
        )

    def merge(
        self,
        score_NF: Float[Tensor, "N F"],
        value_NF: Float[Tensor, "N F"],
        window_N: Int[Tensor, " N"],
        acts_NWF: Float[Tensor, "N W F"],
    ) -> None:
        """Keep, per feature, the ``K`` highest scores among the kept and the new windows."""
        k, n = self.score_KF.shape[0], score_NF.shape[0]
        if k == 0 or n == 0:
            return
        # Only windows that beat some feature's current k-th score can enter; after the first
        # chunks these are few, so the token activations of the rest are never copied.
        rows = (score_NF > self.score_KF.min(dim=0).values).any(dim=1).nonzero().flatten()
        if len(rows) == 0:
            return
        score_NF, value_NF, window_N, acts_NWF = score_NF[rows], value_NF[rows], window_N[rows], acts_NWF[rows]
        n = len(rows)
        score = torch.cat([self.score_KF, score_NF])
        top = score.topk(k, dim=0).indices  # [K, F] rows into the concatenation
        self.score_KF = score.gather(0, top)
        self.value_KF = torch.cat([self.value_KF, value_NF]).gather(0, top)
        windows = torch.cat([self.window_KF, window_N[:, None].expand(n, score_NF.shape[1])])
        self.window_KF = windows.gather(0, top)
        self.acts_KWF = self._merged_acts(top, acts_NWF)

    def _merged_acts(self, top_KF: Tensor, acts_NWF: Tensor) -> Tensor:
        """The kept entries' token activations: old entries gathered from the kept ones, new
        entries copied from the chunk one (entry, feature) at a time. Concatenating the
        chunk's ``[N, W, F]`` activations with the kept ones cost a full copy of the chunk
        per selection; only the few entries that changed need one."""
        k, w, f = self.acts_KWF.shape
        old = top_KF < k
        acts = self.acts_KWF.gather(0, top_KF.clamp_max(k - 1)[:, None, :].expand(k, w, f))
        slot, feature = (~old).nonzero(as_tuple=True)
        if len(slot):
            row = top_KF[slot, feature] - k
            acts[slot, :, feature] = acts_NWF[row, :, feature].to(torch.float16)
        return acts

    def state(self) -> dict[str, Tensor]:
        return {"score": self.score_KF.cpu(), "value": self.value_KF.cpu(), "window": self.window_KF.cpu(),
                "acts": self.acts_KWF.cpu()}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Tensor], device: torch.device) -> Selection:
        return cls(state["score"].to(device), state["value"].to(device), state["window"].to(device),
                   state["acts"].to(device))  # fmt: skip

    def entries(self, feature: int) -> list[tuple[float, float, int, Tensor]]:
        """(score, value, window id, per-token acts [W]) of one feature's filled entries, best first."""
        keep = torch.isfinite(self.score_KF[:, feature]).nonzero().flatten().tolist()
        rows = [(float(self.score_KF[i, feature]), float(self.value_KF[i, feature]), int(self.window_KF[i, feature]),
                 self.acts_KWF[i, :, feature].float().cpu()) for i in keep]  # fmt: skip
        return sorted(rows, key=lambda r: -r[0])

    def all_entries(self) -> list[list[tuple[float, float, int, Tensor]]]:
        """:meth:`entries` of every feature, moved to the CPU once (for thousands of features,
        one feature at a time spends most of its time in small copies)."""
        score = self.score_KF.cpu()
        order = torch.sort(-score, dim=0, stable=True).indices.T.tolist()
        finite = torch.isfinite(score).T.tolist()
        scores, values, windows = score.T.tolist(), self.value_KF.cpu().T.tolist(), self.window_KF.cpu().T.tolist()
        acts = self.acts_KWF.float().cpu().permute(2, 0, 1)  # [F, K, W]
        return [[(scores[f][i], values[f][i], windows[f][i], acts[f, i]) for i in order[f] if finite[f][i]]
                for f in range(len(order))]  # fmt: skip
