# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    feature as feature,
    layers as layers,
    max_activating as max_activating,
    rankings as rankings,
    significance as significance,
)
from .coactivation import CoActivation as CoActivation, coactivation as coactivation
from .feature import (
    FeatureSummary as FeatureSummary,
    Histogram as Histogram,
    category_means as category_means,
    feature_summary as feature_summary,
    logit_lens as logit_lens,
    neuronpedia_link as neuronpedia_link,
)
from .layers import (
    LayerComparison as LayerComparison,
    compare_layers as compare_layers,
    describe_trends as describe_trends,
    layer_trends as layer_trends,
)
from .max_activating import (
    TopExamples as TopExamples,
    rank_text_features as rank_text_features,
    token_profile as token_profile,
    top_examples as top_examples,
    top_examples_in as top_examples_in,
)
from .rankings import (
    ActivityStats as ActivityStats,
    activity as activity,
    composite as composite,
    concept_search as concept_search,
    frequent as frequent,
    selective as selective,
    strongest as strongest,
)
from .significance import (
    ConfidenceInterval as ConfidenceInterval,
    PermutationResult as PermutationResult,
    auroc_by_category as auroc_by_category,
    benjamini_hochberg as benjamini_hochberg,
    bootstrap_auroc_ci as bootstrap_auroc_ci,
    midranks as midranks,
    permutation_pvalues as permutation_pvalues,
)
from .specialist_evidence import (
    specialist_categories as specialist_categories,
    specialist_evidence as specialist_evidence,
    top_texts_in_and_out as top_texts_in_and_out,
)
from .specialists import (
    SPECIALIST_COLUMNS as SPECIALIST_COLUMNS,
    StrongCounts as StrongCounts,
    default_permutations as default_permutations,
    specialist_matrix as specialist_matrix,
    specialists as specialists,
    strong_counts as strong_counts,
)
