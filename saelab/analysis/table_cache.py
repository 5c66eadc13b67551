"""Specialist tables kept on disk, so asking again for the same statistics reads them back.

Notebook 03 runs :func:`~saelab.analysis.layers.compare_layers` on the profile's four SAEs, and
notebook 07 asks for the very same comparison of that model (beside a second one). The
label-permutation tests are what costs (about 7 s per SAE of 4,608 features on 2 cores). A
table depends only on the pooled activations, the labels and the settings, the seed
included, so those, hashed, are its key (with :data:`TABLE_VERSION`): changed activations,
labels or settings never read a stale table.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saelab._util.atomic import atomic_write_bytes
from saelab._util.paths import cache_dir
from saelab.analysis.specialists import specialists

log = logging.getLogger(__name__)

TABLE_VERSION = 1
"""Bump when what :func:`specialists` computes changes; older tables are then ignored."""

_SETTINGS = inspect.signature(specialists)


def cached_specialists(x: np.ndarray, labels: Sequence[str], **kwargs: Any) -> pd.DataFrame:
    """:func:`specialists` of ``x`` [n_texts, d_sae], read from ``$SAELAB_CACHE/specialists``
    when the same activations, labels and settings were tested before, else computed and kept."""
    path = _table_path(x, labels, kwargs)
    if path.is_file():
        try:
            table = pickle.loads(path.read_bytes())
            if isinstance(table, pd.DataFrame):
                return table
        except Exception as err:  # noqa: BLE001 (any damage means: compute it again)
            log.warning("Ignoring unreadable specialist table %s (%s)", path, err)
    table = specialists(x, labels, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, pickle.dumps(table))
    return table


def _table_path(x: np.ndarray, labels: Sequence[str], kwargs: dict[str, Any]) -> Path:
    # Defaults filled in, so that an explicit default and an omitted one share a table.
    bound = _SETTINGS.bind(x, labels, **kwargs)
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k not in ("pooled", "labels")}
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": TABLE_VERSION, "settings": settings, "labels": list(labels),
                              "dtype": str(x.dtype), "shape": x.shape}, default=str).encode())  # fmt: skip
    digest.update(np.ascontiguousarray(x).data)
    return cache_dir() / "specialists" / f"{digest.hexdigest()[:20]}.pkl"
