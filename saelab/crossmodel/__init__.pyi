# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
from .conclusions import (
    CONFOUNDS as CONFOUNDS,
    explanation_sentence as explanation_sentence,
    matching_sentences as matching_sentences,
    specialist_sentences as specialist_sentences,
    svcca_sentence as svcca_sentence,
)
from .explanations import explainability_table as explainability_table, explanation_records as explanation_records
from .matching import (
    CrossModelMatches as CrossModelMatches,
    match_models as match_models,
    matched_pairs as matched_pairs,
    relative_depth as relative_depth,
    within_word_shuffle as within_word_shuffle,
)
from .spans import (
    SpanSample as SpanSample,
    align_spans as align_spans,
    span_sample as span_sample,
    word_spans as word_spans,
)
from .specialists import specialist_summary as specialist_summary, specialists_by_depth as specialists_by_depth
from .svcca import SVCCAResult as SVCCAResult, decoder_svcca as decoder_svcca, svcca as svcca
