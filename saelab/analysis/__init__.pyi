# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .coactivation import coactivation as coactivation
from .feature import feature_summary as feature_summary
from .layers import compare_layers as compare_layers, describe_trends as describe_trends, layer_trends as layer_trends
from .max_activating import (
    token_profile as token_profile,
    top_examples as top_examples,
    top_examples_in as top_examples_in,
)
from .rankings import (
    composite as composite,
    concept_search as concept_search,
    frequent as frequent,
    selective as selective,
    strongest as strongest,
)
from .specialist_evidence import (
    specialist_categories as specialist_categories,
    specialist_evidence as specialist_evidence,
    top_texts_in_and_out as top_texts_in_and_out,
)
from .specialists import specialists as specialists
