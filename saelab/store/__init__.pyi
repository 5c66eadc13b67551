# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    batches as batches,
    build as build,
    config as config,
    distributed as distributed,
    manifest as manifest,
    pack as pack,
    reader as reader,
    shards as shards,
)
from .batches import BatchIterator as BatchIterator
from .build import build_store as build_store, store_key as store_key, store_path as store_path
from .config import (
    DEFAULT_MEMORY_BUDGET as DEFAULT_MEMORY_BUDGET,
    SPLITS as SPLITS,
    STORE_DTYPES as STORE_DTYPES,
    STORE_FORMAT as STORE_FORMAT,
    STORE_VERSION as STORE_VERSION,
    Split as Split,
    StoreConfig as StoreConfig,
)
from .pack import keep_mask as keep_mask, tokenize_corpus as tokenize_corpus
from .reader import ActivationStore as ActivationStore, RowPositions as RowPositions
