# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    batches as batches,
    cache as cache,
    extract as extract,
    hooks as hooks,
    per_token as per_token,
    tokens as tokens,
)
from .batches import Batch as Batch, iter_batches as iter_batches
from .cache import cached_per_token as cached_per_token, feature_cache_dir as feature_cache_dir
from .extract import (
    extract_features as extract_features,
    extract_features_multi as extract_features_multi,
    extract_per_token as extract_per_token,
    extract_per_token_multi as extract_per_token_multi,
    pool as pool,
)
from .hooks import (
    encode_activations as encode_activations,
    hook_activations as hook_activations,
    run_hooks as run_hooks,
)
from .per_token import POOLINGS as POOLINGS, PerTokenFeatures as PerTokenFeatures, Pooling as Pooling
from .tokens import (
    TextTooLongWarning as TextTooLongWarning,
    Tokenized as Tokenized,
    encode_texts as encode_texts,
    token_strings as token_strings,
    tokenize as tokenize,
)
