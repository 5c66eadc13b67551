"""Export a trained SAE in SAELens disk format: ``cfg.json`` + ``sae_weights.safetensors``.

``sae_lens.SAE.load_from_disk(path)`` loads the folder as the SAELens architecture each
architecture names (``TrainableSAE.sae_lens_architecture``: relu -> ``standard``, jumprelu,
batchtopk and matryoshka_batchtopk -> ``jumprelu``, topk -> ``topk``) and encodes exactly as
:meth:`TrainableSAE.encode` does: both subtract b_dec from the input before the encoder
(``apply_b_dec_to_input=True``); the architecture adds its own ``cfg.json`` fields and
tensors (``sae_lens_cfg_fields``, ``sae_lens_tensors``), e.g. JumpReLU's thresholds.

Weights may be stored in a smaller dtype (the bundled suite uses float16) while
``cfg.json`` says ``float32``: SAELens casts weights to the config's dtype on load, so the
folder stays small on disk and computes in float32.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from saelab._util.atomic import write_dir_atomically
from saelab.train.base import TrainableSAE

if TYPE_CHECKING:
    from sae_lens import SAE

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"


def sae_lens_state_dict(
    sae: TrainableSAE[Any], *, dtype: str = "float32", input_scale: float = 1.0
) -> dict[str, Tensor]:
    """The tensors SAELens expects, on CPU, contiguous, in ``dtype``.

    A tied decoder is materialised as its own ``W_dec``. The SAE's own ``input_scale`` (its
    normalisation constant, see ``TrainConfig.normalize_activations``) times ``input_scale``
    (a factor the training activations were multiplied by before they reached the trainer)
    is folded in, so the exported SAE reads raw activations: W_enc * s, W_dec / s, b_dec / s
    (pre-activations, hence thresholds and top-k choices, are unchanged).
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"Unknown storage dtype {dtype!r}; valid: {list(STORAGE_DTYPES)}")
    input_scale = folded_input_scale(sae, input_scale)
    with torch.no_grad():
        state = {
            "W_enc": sae.W_enc * input_scale,
            "b_enc": sae.b_enc.clone(),
            "W_dec": sae.W_dec / input_scale,
            "b_dec": sae.b_dec / input_scale,
            **sae.sae_lens_tensors(),
        }
        out_dtype = STORAGE_DTYPES[dtype]
        return {name: t.detach().to("cpu", out_dtype).contiguous() for name, t in state.items()}


def folded_input_scale(sae: TrainableSAE[Any], input_scale: float = 1.0) -> float:
    """The one factor folded into the exported weights: ``input_scale`` (applied to the
    activations before they reached the trainer) times the SAE's own normalisation constant."""
    if not input_scale > 0:
        raise ValueError(f"input_scale must be > 0, got {input_scale}")
    return input_scale * float(sae.input_scale)


def sae_lens_cfg_dict(
    sae: TrainableSAE[Any],
    *,
    extra_metadata: Mapping[str, Any] | None = None,
    storage_dtype: str = "float32",
    input_scale: float = 1.0,
) -> dict[str, Any]:
    """The ``cfg.json`` contents: SAELens's inference config plus provenance metadata
    (including the factor :func:`sae_lens_state_dict` folds in for this ``input_scale``)."""
    import sae_lens

    cfg = sae.cfg
    out: dict[str, Any] = {
        "architecture": sae.sae_lens_architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.sae_lens_cfg_fields(),
    }
    metadata: dict[str, Any] = {
        # Without a version, SAELens treats the config as pre-6.0 and rewrites it.
        "sae_lens_version": sae_lens.__version__,
        "sae_lens_training_version": None,
        "model_name": cfg.model_name,
        "hook_name": cfg.hook_name,
        "hook_head_index": None,
        "context_size": cfg.context_size,
        "prepend_bos": cfg.prepend_bos,
        "dataset_path": cfg.dataset,
        "model_from_pretrained_kwargs": {},
        "trained_with": "saelab",
        "saelab_version": _saelab_version(),
        "saelab_storage_dtype": storage_dtype,
        "saelab_train_config": cfg.to_dict(),
    }
    metadata.update(extra_metadata or {})
    metadata["saelab_input_scale_folded"] = folded_input_scale(sae, input_scale)  # what the weights hold, always
    out["metadata"] = metadata
    return out


def save_sae(
    sae: TrainableSAE[Any],
    path: str | Path,
    *,
    dtype: str = "float32",
    input_scale: float = 1.0,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``sae`` to the folder ``path`` in SAELens disk format and return the path.

    The folder is written next to its destination under a temporary name, flushed to disk,
    and renamed into place, so a reader never sees a half-written SAE. An existing folder at
    ``path`` is replaced. ``dtype`` is the storage dtype of the weights; ``input_scale`` is
    folded in (see :func:`sae_lens_state_dict`); ``extra_metadata`` (JSON-serialisable) is
    merged into ``cfg.json``'s metadata, e.g. training tokens or final metrics.
    """
    state = sae_lens_state_dict(sae, dtype=dtype, input_scale=input_scale)
    cfg_dict = sae_lens_cfg_dict(sae, extra_metadata=extra_metadata, storage_dtype=dtype, input_scale=input_scale)
    text = json.dumps(cfg_dict, indent=2)  # fails here, before touching the disk, if not serialisable

    def write(folder: Path) -> None:
        save_file(state, str(folder / WEIGHTS_FILENAME), metadata={"format": "pt"})
        (folder / CFG_FILENAME).write_text(text + "\n")

    return write_dir_atomically(Path(path), write)


def to_sae_lens(
    sae: TrainableSAE[Any], *, input_scale: float = 1.0, device: str | torch.device | None = None
) -> SAE:
    """The same SAE as an in-memory ``sae_lens.SAE`` (float32), without touching the disk."""
    from sae_lens import SAE

    cfg_dict = sae_lens_cfg_dict(sae, input_scale=input_scale)
    cfg_dict["device"] = str(torch.device(device) if device is not None else sae.device)
    out = SAE.from_dict(cfg_dict)
    state = sae_lens_state_dict(sae, input_scale=input_scale)
    out.load_state_dict({name: t.to(out.device) for name, t in state.items()})
    return out.eval()


def _saelab_version() -> str:
    try:
        return importlib.metadata.version("saelab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
