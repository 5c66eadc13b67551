# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .cache import cached_per_token as cached_per_token, feature_cache_dir as feature_cache_dir
from .extract import (
    extract_features as extract_features,
    extract_features_multi as extract_features_multi,
    extract_per_token as extract_per_token,
    extract_per_token_multi as extract_per_token_multi,
)
from .hooks import hook_activations as hook_activations, run_hooks as run_hooks
from .per_token import PerTokenFeatures as PerTokenFeatures
from .tokens import TextTooLongWarning as TextTooLongWarning, tokenize as tokenize
