# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .base import Backend as Backend
from .embedder import load_embedder as load_embedder
from .http import HttpConfig as HttpConfig, OpenAIBackend as OpenAIBackend
from .local import LocalBackend as LocalBackend, LocalConfig as LocalConfig
from .server import serve as serve
