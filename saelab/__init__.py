"""saelab: see inside language models with sparse autoencoders.

The notebooks narrate; this library computes. Start with::

    import saelab
    profile = saelab.profiles.get()          # "offline" (default) or "gpt2"
    model = profile.load_model()
    sae = profile.load_sae()
    feats = saelab.extract_features(model, sae, ["def f(x): return x"])  # [1, d_sae]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names -> the module that defines them. Imported lazily so that `import saelab`
# (and light helpers such as saelab.browser used by setup) do not pay for torch,
# TransformerLens and SAELens until something needs them.
_EXPORTS = {
    "PerTokenFeatures": "saelab.extract",
    "dense_vs_sparse": "saelab.extract",
    "extract_features": "saelab.extract",
    "extract_features_multi": "saelab.extract",
    "load_dataset": "saelab.data",
    "load_model": "saelab.models",
    "load_sae": "saelab.saes",
    "evaluate_sae": "saelab.evals",
}
_SUBMODULES = {"analysis", "profiles", "models", "saes", "extract", "cache", "data", "paths", "browser", "atomic", "device", "evals", "train", "store", "corpus", "plots", "widgets"}

__all__ = sorted([*_EXPORTS, "profiles"])

if TYPE_CHECKING:
    from saelab import profiles
    from saelab.data import load_dataset
    from saelab.evals import evaluate_sae
    from saelab.extract import PerTokenFeatures, dense_vs_sparse, extract_features, extract_features_multi
    from saelab.models import load_model
    from saelab.saes import load_sae


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"saelab.{name}")
    raise AttributeError(f"module 'saelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])
