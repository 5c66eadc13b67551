"""A disk cache of per-token SAE features, so the notebooks pay for the model once.

Notebook 01 extracts the labelled dataset's features for every SAE of the profile; notebooks
02 and 03 ask for the same texts and get them back in well under a second. Per-token
features are what is cached because every pooled view (mean, max, sum, last) derives from
them (:meth:`PerTokenFeatures.pool`) and the token-level views need them anyway.

The key covers everything that decides the numbers: the model's identity (configuration,
tokenizer and every weight; :func:`saelab._util.keys.model_identity`), the SAE's (its hook
and every parameter), the texts, BOS exclusion and :data:`CACHE_VERSION`. A changed model,
SAE or text list therefore never reads stale features, and a cold and a warm load of the
same model share every entry.

The extraction also keeps the model's activations at those hooks (:mod:`saelab.extract.residuals`,
under ``<root>/residuals``), so another SAE at the same hooks is only an encode away.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from sae_lens import SAE
from safetensors import SafetensorError
from transformer_lens import HookedTransformer

from saelab._util.keys import model_identity, sae_identity, stable_hash, texts_digest
from saelab._util.paths import cache_dir
from saelab.extract.extract import extract_per_token_multi
from saelab.extract.per_token import PerTokenFeatures
from saelab.saes import sae_hook_name

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bump when what extraction computes changes; older entries are then ignored."""


def feature_cache_dir() -> Path:
    """Where :func:`cached_per_token` keeps its entries (under ``$SAELAB_CACHE``)."""
    return cache_dir() / "features"


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
    (:func:`saelab.extract.extract_per_token_multi`), then written atomically. ``refresh``
    recomputes everything. Returns ``{name: PerTokenFeatures}`` in ``saes``' order.
    """
    folder = Path(root) if root is not None else feature_cache_dir()
    model_key, texts_key = model_identity(model), texts_digest(texts)
    paths = {name: folder / _entry_name(model_key, sae, texts_key, exclude_bos) for name, sae in saes.items()}
    loaded = {} if refresh else {name: _try_load(path) for name, path in paths.items()}
    found = {name: per_token for name, per_token in loaded.items() if per_token is not None}
    missing = {name: sae for name, sae in saes.items() if name not in found}
    if missing:
        log.info("Extracting per-token features for %s (%d texts)", list(missing), len(texts))
        # The model's activations are kept beside the features (and read back when another
        # SAE at the same hooks asks for the same texts): see saelab.extract.residuals.
        computed = extract_per_token_multi(
            model, missing, texts, exclude_bos=exclude_bos, batch_size=batch_size, progress=progress,
            residual_root=None if refresh else folder,
        )  # fmt: skip
        for name, per_token in computed.items():
            per_token.save(paths[name])
        found.update(computed)
    return {name: found[name] for name in saes}


def _entry_name(model_key: str, sae: SAE, texts_key: str, exclude_bos: bool) -> str:
    ident = {
        "version": CACHE_VERSION,
        "model": model_key,
        "sae": sae_identity(sae),
        "texts": texts_key,
        "exclude_bos": exclude_bos,
    }
    return f"{sae_hook_name(sae)}-{stable_hash(ident)}"


def _try_load(path: Path) -> PerTokenFeatures | None:
    if not (path / "features.safetensors").is_file():
        return None
    try:
        return PerTokenFeatures.load(path)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        # A damaged entry is recomputed rather than trusted.
        log.warning("Ignoring unreadable feature cache %s (%s)", path, err)
        return None
