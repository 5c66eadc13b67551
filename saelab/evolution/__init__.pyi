# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .clusters import cluster_top_tokens as cluster_top_tokens, feature_top_tokens as feature_top_tokens
from .emergence import feature_emergence as feature_emergence, specialist_emergence as specialist_emergence
from .lineage_specialists import specialist_lineages as specialist_lineages
from .lineages import LineageConfig as LineageConfig, trace_lineages as trace_lineages
from .maps import MapConfig as MapConfig, feature_map as feature_map, group_closeness as group_closeness
from .matching import (
    MAX_MATRIX_BYTES as MAX_MATRIX_BYTES,
    match_features as match_features,
    matching_memory as matching_memory,
)
from .samples import per_token_pairs as per_token_pairs, store_pairs as store_pairs, text_pairs as text_pairs
