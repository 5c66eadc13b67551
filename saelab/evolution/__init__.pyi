# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from .clusters import (
    cluster_directions as cluster_directions,
    cluster_top_tokens as cluster_top_tokens,
    feature_top_tokens as feature_top_tokens,
)
from .emergence import (
    Emergence as Emergence,
    SpecialistEmergence as SpecialistEmergence,
    feature_emergence as feature_emergence,
    specialist_emergence as specialist_emergence,
)
from .lineage_specialists import specialist_lineages as specialist_lineages
from .lineages import LineageConfig as LineageConfig, Lineages as Lineages, trace_lineages as trace_lineages
from .maps import (
    FeatureMap as FeatureMap,
    MapConfig as MapConfig,
    feature_map as feature_map,
    group_closeness as group_closeness,
)
from .matching import (
    MAX_MATRIX_BYTES as MAX_MATRIX_BYTES,
    FeatureMatches as FeatureMatches,
    Similarities as Similarities,
    best_of as best_of,
    match_features as match_features,
    matches_from as matches_from,
    matching_memory as matching_memory,
    similarities as similarities,
)
from .samples import per_token_pairs as per_token_pairs, store_pairs as store_pairs, text_pairs as text_pairs
from .similarity import (
    CorrelationAccumulator as CorrelationAccumulator,
    decoder_directions as decoder_directions,
    decoder_similarity as decoder_similarity,
)
