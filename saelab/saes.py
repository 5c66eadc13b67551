"""Load SAEs (SAELens releases, the bundled suite, local folders) and check them against a model.

Neuronpedia ids come from SAELens's own ``pretrained_saes.yaml`` rather than being built
by hand: hand-built ids are off by one for ``hook_resid_post`` at the last layer.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
from safetensors import SafetensorError, safe_open
from transformer_lens import HookedTransformer

from saelab._util.device import default_device
from saelab._util.hook_names import D_MODEL_HOOKS, hook_layer
from saelab._util.paths import data_dir
from saelab.models import load_model

log = logging.getLogger(__name__)

BUNDLED_RELEASE = "saelab-smollm2-135m"
"""The SAE suite saelab trains for the embedded model and ships under ``data/saes/``."""

BUNDLED_RELEASES: dict[str, str] = {BUNDLED_RELEASE: "smollm2-135m", "saelab-gemma3-270m": "gemma-3-270m"}
"""Every suite saelab trains and ships under ``data/saes/``, with the embedded model it reads."""

NEURONPEDIA_BASE = "https://www.neuronpedia.org"
CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"


def bundled_suite_dir(release: str = BUNDLED_RELEASE) -> Path:
    return data_dir() / "saes" / release


def bundled_sae_ids(release: str = BUNDLED_RELEASE) -> list[str]:
    """Hook names available in the bundled suite (empty when it is not there yet)."""
    root = bundled_suite_dir(release)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CFG_FILENAME).is_file())


def load_sae(
    release_or_path: str | Path,
    sae_id: str | None = None,
    device: str | torch.device | None = None,
    *,
    dtype: str = "float32",
) -> SAE:
    """Load an SAE from the bundled suite, a local SAELens-format folder, or a SAELens release.

    * ``load_sae("saelab-smollm2-135m", "blocks.20.hook_resid_pre")``: the bundled suite.
    * ``load_sae("path/to/folder")`` (or ``load_sae("path/to/suite", "hook")``): any folder
      that ``SAE.load_from_disk`` reads.
    * ``load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre")``: a SAELens release
      (downloads on first use, so online only).
    """
    device_str = str(torch.device(device) if device is not None else default_device())
    name = str(release_or_path)
    if name in BUNDLED_RELEASES:
        return _load_bundled(name, sae_id, device_str, dtype)
    if Path(name).exists():
        folder = Path(name) / sae_id if sae_id else Path(name)
        return _load_folder(folder, device_str, dtype)
    directory = get_pretrained_saes_directory()
    if name in directory:
        return _load_release(name, sae_id, device_str, dtype)
    close = difflib.get_close_matches(name, [BUNDLED_RELEASE, *directory], n=5, cutoff=0.5)
    raise ValueError(
        f"Unknown SAE release or path {name!r}."
        + (f" Did you mean {close}?" if close else "")
        + f" Valid: the bundled suite {BUNDLED_RELEASE!r}, a folder in SAELens disk format, "
        f"or one of {len(directory)} SAELens releases (e.g. 'gpt2-small-res-jb'; full list: "
        "sae_lens.loading.pretrained_saes_directory.get_pretrained_saes_directory())."
    )


def _load_bundled(release: str, sae_id: str | None, device: str, dtype: str) -> SAE:
    available = bundled_sae_ids(release)
    if not available:
        raise FileNotFoundError(
            f"The bundled SAE suite {release!r} is not present in {bundled_suite_dir(release)}. "
            f"It is trained by saelab itself; run `make saes PROFILE={_profile_of(release)}` to build it, "
            "or pass a SAELens "
            "release (online) or a local SAE folder instead."
        )
    if sae_id not in available:
        raise ValueError(f"SAE id {sae_id!r} is not in the bundled suite {release!r}. Valid ids: {available}")
    return _load_folder(bundled_suite_dir(release) / sae_id, device, dtype)


def _load_folder(folder: Path, device: str, dtype: str) -> SAE:
    if not (folder / CFG_FILENAME).is_file():
        subfolders = sorted(p.name for p in folder.iterdir() if (p / CFG_FILENAME).is_file()) if folder.is_dir() else []
        hint = f" It holds these SAEs; pass one as sae_id: {subfolders}" if subfolders else ""
        raise FileNotFoundError(f"{folder} is not an SAE folder in SAELens disk format (no cfg.json).{hint}")
    check_sae_files(folder)
    return SAE.load_from_disk(folder, device=device, dtype=dtype)


class CorruptSAEError(ValueError):
    """An SAE folder's files exist but cannot be read (truncated, damaged, not what they claim)."""


def check_sae_files(folder: Path) -> None:
    """Read the config and the weights' header before SAELens does, so a damaged file gets an
    error that names it and says what to do, instead of a bare JSONDecodeError or
    ``SafetensorError: incomplete metadata``."""
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    remedy = _corrupt_remedy(folder)
    try:
        json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptSAEError(f"The SAE config {cfg_path} is not valid JSON ({err}). {remedy}") from None
    if not weights_path.is_file():
        raise CorruptSAEError(f"The SAE folder {folder} has a cfg.json but no {WEIGHTS_FILENAME}. {remedy}")
    try:
        # Opening parses the header and checks that the data covers every tensor it lists,
        # so a truncated file fails here without reading the weights.
        with safe_open(str(weights_path), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CorruptSAEError(
            f"The SAE weights {weights_path} cannot be read ({err}); the file is truncated or damaged. {remedy}"
        ) from None


def _profile_of(release: str) -> str:
    return "offline" if release == BUNDLED_RELEASE else "gemma"


def _corrupt_remedy(folder: Path) -> str:
    bundled = (data_dir() / "saes").resolve()
    if bundled in folder.resolve().parents:
        return (
            "This is part of the bundled suite: restore it with `git checkout -- data/saes` "
            "(or retrain it with `make saes`)."
        )
    return "Copy or export the SAE again (saelab.train.save_sae writes complete folders atomically)."


def _load_release(release: str, sae_id: str | None, device: str, dtype: str) -> SAE:
    valid = list(get_pretrained_saes_directory()[release].saes_map)
    if sae_id not in valid:
        raise ValueError(f"SAE id {sae_id!r} not in release {release!r}. Valid ids: {valid}")
    try:
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
    except OSError as err:
        raise OSError(
            f"Could not download SAE {release}/{sae_id} ({err}). SAELens releases need the network "
            f"on first use; offline, use the bundled suite {BUNDLED_RELEASE!r} (profile 'offline')."
        ) from err


# ---------------------------------------------------------------------------------------
# Metadata: Neuronpedia, model loading options.


def neuronpedia_id(release: str, sae_id: str) -> str | None:
    """The Neuronpedia id SAELens records for this SAE (None if the release has none)."""
    info = get_pretrained_saes_directory().get(release)
    if info is None:
        return None
    return info.neuronpedia_id.get(sae_id)


def neuronpedia_url(np_id: str | None, feature: int | None = None) -> str | None:
    """Link to an SAE's dashboard on Neuronpedia, or one feature's page."""
    if not np_id:
        return None
    return f"{NEURONPEDIA_BASE}/{np_id}" + (f"/{int(feature)}" if feature is not None else "")


def sae_neuronpedia_url(sae: SAE, feature: int | None = None) -> str | None:
    """Neuronpedia link for a loaded SAE, from its metadata (set by SAELens from the yaml)."""
    return neuronpedia_url(getattr(sae.cfg.metadata, "neuronpedia_id", None), feature)


def release_model_kwargs(release: str) -> dict[str, Any]:
    """Model loading options a SAELens release asks for (e.g. center_writing_weights)."""
    info = get_pretrained_saes_directory().get(release)
    overrides = (info.config_overrides or {}) if info else {}
    kwargs = overrides.get("model_from_pretrained_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(
            f"SAELens release {release!r} has model_from_pretrained_kwargs that is not a mapping: {kwargs!r}"
        )
    return dict(kwargs)


def model_kwargs_for_sae(sae: SAE) -> dict[str, Any]:
    """Model loading options recorded in a loaded SAE's metadata."""
    return dict(getattr(sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {})


def load_model_for_sae(sae: SAE, device: str | torch.device | None = None) -> HookedTransformer:
    """Load the model an SAE was trained on, with the loading options its metadata asks for.

    gpt2-small-res-jb, for example, expects ``center_writing_weights=True``; reading it from
    the SAE keeps the model and the SAE consistent without anyone remembering that.
    """
    name = getattr(sae.cfg.metadata, "model_name", None)
    if not name:
        raise ValueError("This SAE's metadata has no model_name; call saelab.load_model(name) yourself.")
    return load_model(name, device, from_pretrained_kwargs=model_kwargs_for_sae(sae))


def sae_hook_name(sae: SAE) -> str:
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    if not hook:
        raise ValueError("This SAE's metadata has no hook_name, so saelab cannot tell where to read activations.")
    return hook


# ---------------------------------------------------------------------------------------
# Compatibility between a model and an SAE.


def check_compatible(model: HookedTransformer, sae: SAE) -> None:
    """Raise a clear error when the SAE cannot read this model's activations."""
    hook = sae_hook_name(sae)
    if hook not in model.hook_dict:
        layer = hook_layer(hook)
        why = (
            f"the model has only {model.cfg.n_layers} layers"
            if layer is not None and layer >= model.cfg.n_layers
            else "the model has no such hook point"
        )
        raise ValueError(
            f"SAE hook {hook!r} does not exist in model {model.cfg.model_name!r}: {why}. "
            f"Examples of valid hooks: {[h for h in model.hook_dict if 'resid' in h][:4]}"
        )
    expected = model.cfg.d_model if hook.endswith(D_MODEL_HOOKS) else None
    if expected is not None and sae.cfg.d_in != expected:
        raise ValueError(
            f"SAE d_in={sae.cfg.d_in} does not match {hook!r} of model {model.cfg.model_name!r} "
            f"(d_model={expected}). This SAE was trained on a different model "
            f"({getattr(sae.cfg.metadata, 'model_name', None) or 'unknown'})."
        )
    sae_model = getattr(sae.cfg.metadata, "model_name", None)
    if sae_model and not _same_model(sae_model, model.cfg.model_name):
        log.warning("SAE was trained on %r but the model is %r", sae_model, model.cfg.model_name)


def _same_model(a: str, b: str) -> bool:
    # SAELens says "gpt2-small" where TransformerLens says "gpt2"; compare loosely.
    norm = lambda s: s.lower().replace("-small", "").split("/")[-1]  # noqa: E731
    return norm(a) == norm(b) or norm(a) in norm(b) or norm(b) in norm(a)
