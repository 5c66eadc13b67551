"""Per-token SAE features of a list of texts, stored sparsely, and built batch by batch.

Only tokens that count for pooling are kept (no pads; no BOS when it is excluded), one CSR
row per token, so a dataset's features for every token fit in memory and on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from saelab._util.atomic import write_dir_atomically
from saelab.extract.batches import Batch
from saelab.extract.tokens import Tokenized, token_strings

if TYPE_CHECKING:
    import pandas as pd
    from transformer_lens import HookedTransformer

Pooling = Literal["mean", "max", "sum", "last"]
POOLINGS: tuple[str, ...] = ("mean", "max", "sum", "last")


@dataclass
class PerTokenFeatures:
    """Per-token SAE features for a list of texts, stored sparsely (CSR over tokens).

    Row ``r`` of the flattened token axis belongs to text ``text_of_row[r]``; its non-zero
    features are ``feature_idx[row_ptr[r]:row_ptr[r+1]]`` with ``values`` alongside.
    Only tokens that count for pooling are kept (no pads; no BOS when excluded).
    """

    tokens: list[list[str]]
    """Token strings per text, aligned with the rows of that text."""
    token_ids: list[list[int]]
    d_sae: int
    row_ptr: Int[Tensor, " n_rows_plus_1"]
    feature_idx: Int[Tensor, " nnz"]
    values: Float[Tensor, " nnz"]
    text_row_start: Int[Tensor, " n_texts_plus_1"]
    """Rows of text ``i`` are ``text_row_start[i]:text_row_start[i+1]``."""

    @property
    def n_texts(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return self.n_texts

    def __getitem__(self, i: int) -> Float[Tensor, "pos d_sae"]:
        """``result[i]`` is text ``i``'s dense ``[pos, d_sae]`` activations."""
        if not -self.n_texts <= i < self.n_texts:
            raise IndexError(f"text index {i} out of range for {self.n_texts} texts")
        return self.dense(i % self.n_texts)

    def dense(self, i: int) -> Float[Tensor, "pos d_sae"]:
        """Dense activations of text ``i`` (one text at a time keeps memory bounded)."""
        start, end = int(self.text_row_start[i]), int(self.text_row_start[i + 1])
        out = torch.zeros(end - start, self.d_sae)
        lo, hi = int(self.row_ptr[start]), int(self.row_ptr[end])
        counts = self.row_ptr[start + 1 : end + 1] - self.row_ptr[start:end]
        rows = torch.repeat_interleave(torch.arange(end - start), counts)
        out[rows, self.feature_idx[lo:hi]] = self.values[lo:hi]
        return out

    def feature(self, feature: int) -> list[Float[Tensor, " pos"]]:
        """One feature's activation on every token of every text (for token highlighting),
        read from the sparse rows without building any dense ``[pos, d_sae]`` block."""
        self.check_feature(feature)
        hit = self.feature_idx == feature
        flat = torch.zeros(int(self.text_row_start[-1]))
        flat[self.row_of_nonzero()[hit]] = self.values[hit].float()
        bounds = self.text_row_start.tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(self.n_texts)]

    def text_max(self, feature: int) -> Float[Tensor, " n_texts"]:
        """Each text's largest activation of ``feature`` over its tokens (0 where it never fires)."""
        self.check_feature(feature)
        hit = self.feature_idx == feature
        out = torch.zeros(self.n_texts)
        text = self.text_of_row()[self.row_of_nonzero()[hit]]
        return out.scatter_reduce_(0, text, self.values[hit].float(), reduce="amax")

    def density(self) -> Float[Tensor, " d_sae"]:
        """The share of stored tokens on which each feature fires (float64)."""
        fires = torch.bincount(self.feature_idx, minlength=self.d_sae).double()
        return fires / max(1, int(self.text_row_start[-1]))

    def row_of_nonzero(self) -> Int[Tensor, " nnz"]:
        """Token row (over all texts) of each stored non-zero."""
        return torch.repeat_interleave(torch.arange(self.row_ptr.numel() - 1), self.row_ptr[1:] - self.row_ptr[:-1])

    def check_feature(self, feature: int) -> None:
        """Raise a ValueError unless ``feature`` is a valid feature id."""
        if not 0 <= int(feature) < self.d_sae:
            raise ValueError(f"feature {feature} is out of range for d_sae={self.d_sae}")

    def text_of_row(self) -> Int[Tensor, " n_rows"]:
        """Which text each flattened token row belongs to."""
        sizes = self.text_row_start[1:] - self.text_row_start[:-1]
        return torch.repeat_interleave(torch.arange(self.n_texts), sizes)

    def pool(self, pooling: Pooling = "mean") -> Float[Tensor, "n_texts d_sae"]:
        """Pooled features per text, computed from the stored tokens only (the same numbers
        :func:`extract_features` gives with that pooling, up to float summation order)."""
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; valid: {list(POOLINGS)}")
        rows_per_text = (self.text_row_start[1:] - self.text_row_start[:-1]).to(torch.float32)
        if (rows_per_text == 0).any():
            raise ValueError("A text has no tokens to pool (it was empty after excluding BOS).")
        row_of_nz = self.row_of_nonzero()
        if pooling == "last":
            last_rows = self.text_row_start[1:] - 1
            out = torch.zeros(self.n_texts, self.d_sae)
            take = torch.isin(row_of_nz, last_rows)
            text = self.text_of_row()[row_of_nz[take]]
            out[text, self.feature_idx[take]] = self.values[take]
            return out
        text_of_nz = self.text_of_row()[row_of_nz]
        flat = text_of_nz * self.d_sae + self.feature_idx
        if pooling in ("sum", "mean"):
            out = torch.zeros(self.n_texts * self.d_sae).index_add_(0, flat, self.values.float())
            out = out.view(self.n_texts, self.d_sae)
            return out / rows_per_text[:, None] if pooling == "mean" else out
        # max: a (text, feature) pair that is zero on some token has 0 as a candidate too.
        out = torch.full((self.n_texts * self.d_sae,), -torch.inf).scatter_reduce_(
            0, flat, self.values.float(), reduce="amax"
        )
        ones = torch.ones_like(self.values, dtype=torch.float32)
        nnz = torch.zeros(self.n_texts * self.d_sae).index_add_(0, flat, ones)
        has_zero = nnz < rows_per_text.repeat_interleave(self.d_sae)
        out = torch.where(has_zero, out.clamp(min=0.0), out)
        return out.view(self.n_texts, self.d_sae)

    def save(self, path: str | Path) -> Path:
        """Write to a folder (tensors as safetensors, token strings as JSON), atomically."""
        def write(tmp: Path) -> None:
            tensors = {
                "row_ptr": self.row_ptr, "feature_idx": self.feature_idx,
                "values": self.values, "text_row_start": self.text_row_start,
            }
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "features.safetensors"))
            meta = {"d_sae": self.d_sae, "tokens": self.tokens, "token_ids": self.token_ids}
            (tmp / "tokens.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

        return write_dir_atomically(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> PerTokenFeatures:
        """Read what :meth:`save` wrote."""
        path = Path(path)
        tensors = load_file(str(path / "features.safetensors"))
        meta = json.loads((path / "tokens.json").read_text(encoding="utf-8"))
        return cls(tokens=meta["tokens"], token_ids=meta["token_ids"], d_sae=int(meta["d_sae"]), **tensors)

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (text, position, feature) with a non-zero value."""
        import pandas as pd

        row_of_nz = self.row_of_nonzero()
        text = self.text_of_row()[row_of_nz]
        pos = row_of_nz - self.text_row_start[text]
        flat_tokens = [tok for toks in self.tokens for tok in toks]
        return pd.DataFrame(
            {
                "text": text.numpy(),
                "pos": pos.numpy(),
                "token": [flat_tokens[r] for r in row_of_nz.tolist()],
                "feature": self.feature_idx.numpy(),
                "value": self.values.numpy(),
            }
        )


# ---------------------------------------------------------------------------------------
# Building one from batches.


@dataclass(frozen=True)
class SparseRows:
    """One text's kept tokens in CSR form (row = token)."""

    n_rows: int
    row_counts: Tensor
    cols: Tensor
    vals: Tensor


def split_rows(acts: Tensor, batch: Batch) -> list[tuple[int, SparseRows]]:
    out = []
    for row, i in enumerate(batch.index.tolist()):
        kept = acts[row][batch.pool_mask[row].to(acts.device)].float().cpu()
        rows, cols = kept.nonzero(as_tuple=True)  # row-major order, as CSR needs
        counts = torch.bincount(rows, minlength=kept.shape[0])
        out.append((i, SparseRows(kept.shape[0], counts, cols, kept[rows, cols])))
    return out


def assemble_per_token(
    model: HookedTransformer,
    tokenized: Tokenized,
    rows: list[tuple[int, SparseRows]],
    exclude_bos: bool,
    d_sae: int,
) -> PerTokenFeatures:
    by_text = dict(rows)
    token_ids = tokenized.without_bos() if exclude_bos else [list(ids) for ids in tokenized.ids]
    tokens = [token_strings(model, ids) for ids in token_ids]
    row_ptrs, cols, vals, text_start = [torch.zeros(1, dtype=torch.long)], [], [], [0]
    total_rows, total_nnz = 0, 0
    for i in range(len(token_ids)):
        part = by_text[i]
        row_ptrs.append(torch.cumsum(part.row_counts, 0) + total_nnz)
        cols.append(part.cols)
        vals.append(part.vals)
        total_nnz += int(part.vals.numel())
        total_rows += part.n_rows
        text_start.append(total_rows)
    result = PerTokenFeatures(
        tokens=tokens,
        token_ids=token_ids,
        d_sae=d_sae,
        row_ptr=torch.cat(row_ptrs),
        feature_idx=torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long),
        values=torch.cat(vals) if vals else torch.zeros(0),
        text_row_start=torch.tensor(text_start),
    )
    if not torch.isfinite(result.values).all():
        raise FloatingPointError(
            "Non-finite values in per-token features: the model or SAE produced NaN/inf "
            "(check the SAE's dtype and that it matches the model)."
        )
    return result
