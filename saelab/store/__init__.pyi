# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .build import build_store as build_store
from .config import StoreConfig as StoreConfig
from .reader import ActivationStore as ActivationStore
