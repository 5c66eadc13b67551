"""saelab: see inside language models with sparse autoencoders.

The notebooks narrate; this library computes. Start with::

    import saelab
    profile = saelab.profiles.get()          # "offline" (default) or "gpt2"
    model = profile.load_model()
    sae = profile.load_sae()
    pooled = saelab.extract_features(model, sae, ["def f(x): return x"])  # [1, d_sae]

The public names are listed once, in ``__init__.pyi``, and imported on first use, so
``import saelab`` does not pay for torch, TransformerLens and SAELens until something needs
them. The packages and what each may import: ``saelab/README.md``.
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader as _lazy

try:
    __version__ = version("saelab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__getattr__, _stub_dir, __all__ = _lazy.attach_stub(__name__, __file__)
__all__ += ["__version__"]  # attach_stub returns a fresh list


def __dir__() -> list[str]:
    """The public names: the stub's and ``__version__``."""
    return list(__all__)
