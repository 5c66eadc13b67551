"""saelab: see inside language models with sparse autoencoders.

The notebooks narrate; this library computes. Start with::

    import saelab
    profile = saelab.profiles.get()          # "offline" (default) or "gpt2"
    model = profile.load_model()
    sae = profile.load_sae()
    feats = saelab.extract_features(model, sae, ["def f(x): return x"])  # [1, d_sae]
"""

from saelab import profiles
from saelab.data import load_dataset
from saelab.extract import PerTokenFeatures, dense_vs_sparse, extract_features
from saelab.models import load_model
from saelab.saes import load_sae

__all__ = [
    "PerTokenFeatures",
    "dense_vs_sparse",
    "extract_features",
    "load_dataset",
    "load_model",
    "load_sae",
    "profiles",
]
