"""A disk cache of per-token SAE features, so the notebooks pay for the model once.

Notebook 01 extracts the labelled dataset's features for every SAE of the profile; notebooks
02 and 03 ask for the same texts and get them back in well under a second. Per-token features
are what is cached because every pooled view (mean, max, sum, last) derives from them
(:meth:`saelab.extract.PerTokenFeatures.pool`) and the token-level views need them anyway.

The key covers everything that decides the numbers: the model (name, configuration and a
hash of some of its processed weights, which catches ``center_writing_weights`` and the
like), the SAE (a hash of all its parameters and its hook), the texts, BOS exclusion and
:data:`CACHE_VERSION`. A changed SAE or text list therefore never reads stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from sae_lens import SAE
from safetensors import SafetensorError
from transformer_lens import HookedTransformer

from saelab.extract import PerTokenFeatures, extract_features_multi
from saelab.paths import cache_dir
from saelab.saes import sae_hook_name

log = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when what extraction computes changes; older entries are then ignored."""


def sae_fingerprint(sae: SAE) -> str:
    """A hash of every parameter of the SAE and its hook (16 hex digits)."""
    digest = hashlib.sha256(sae_hook_name(sae).encode())
    for name, tensor in sorted(sae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_fingerprint(model: HookedTransformer) -> str:
    """A hash of the model's configuration and of a few processed weight tensors.

    Hashing all 135M parameters would take longer than it saves; the embedding and the first
    block's weights change whenever the weights or their processing (folding, centring) do.
    """
    cfg = {k: str(v) for k, v in model.cfg.to_dict().items() if k not in ("device", "n_devices")}
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    params = dict(model.named_parameters())
    for name in sorted(params):
        if name.startswith(("embed.", "blocks.0.")):
            digest.update(name.encode())
            digest.update(params[name].detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cached_per_token(
    model: HookedTransformer,
    saes: Mapping[str, SAE],
    texts: Sequence[str],
    *,
    exclude_bos: bool = True,
    batch_size: int = 16,
    refresh: bool = False,
    root: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, PerTokenFeatures]:
    """Per-token features of ``texts`` for each SAE, read from the cache or computed.

    SAEs missing from the cache are computed together, in one model pass per batch
    (:func:`saelab.extract.extract_features_multi`), then written atomically. ``refresh``
    recomputes everything. Returns ``{name: PerTokenFeatures}`` in ``saes``' order.
    """
    folder = Path(root) if root is not None else cache_dir() / "features"
    model_fp, texts_fp = model_fingerprint(model), texts_fingerprint(texts)
    paths = {name: folder / _entry_name(model_fp, sae, texts_fp, exclude_bos) for name, sae in saes.items()}
    found = {} if refresh else {name: _try_load(path) for name, path in paths.items()}
    found = {name: feats for name, feats in found.items() if feats is not None}
    missing = {name: sae for name, sae in saes.items() if name not in found}
    if missing:
        log.info("Extracting per-token features for %s (%d texts)", list(missing), len(texts))
        computed = extract_features_multi(
            model, missing, texts, pooling=None, exclude_bos=exclude_bos, batch_size=batch_size, progress=progress
        )
        for name, feats in computed.items():
            feats.save(paths[name])
        found.update(computed)
    return {name: found[name] for name in saes}


def _entry_name(model_fp: str, sae: SAE, texts_fp: str, exclude_bos: bool) -> str:
    ident = {
        "version": CACHE_VERSION,
        "model": model_fp,
        "sae": sae_fingerprint(sae),
        "texts": texts_fp,
        "exclude_bos": exclude_bos,
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"{sae_hook_name(sae)}-{key}"


def _try_load(path: Path) -> PerTokenFeatures | None:
    if not (path / "features.safetensors").is_file():
        return None
    try:
        return PerTokenFeatures.load(path)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        # A damaged entry is recomputed rather than trusted.
        log.warning("Ignoring unreadable feature cache %s (%s)", path, err)
        return None
