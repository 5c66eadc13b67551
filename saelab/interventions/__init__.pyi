# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
# Modules and functions never share a name (a submodule, once imported, would shadow the
# function of the same name).
from .ablation import ablate as ablate
from .attribution import attribute as attribute
from .attribution_check import (
    attribution_accuracy as attribution_accuracy,
    attribution_vs_ablation as attribution_vs_ablation,
    prompts_with_next_token as prompts_with_next_token,
)
from .attribution_targets import ig_completeness as ig_completeness
from .category_steering import steer_categories as steer_categories
from .circuits import feature_circuit as feature_circuit
from .edits import add_to_features as add_to_features, set_features as set_features
from .effects import feature_effects as feature_effects
from .embedding_attribution import token_attribution as token_attribution
from .feature_scale import feature_stats as feature_stats
from .generation import generate as generate
from .judge_protocol import ConceptJudge as ConceptJudge
from .logits import logit_effect as logit_effect
from .method_comparison import (
    ComparisonConfig as ComparisonConfig,
    SteeringComparison as SteeringComparison,
    compare_steering_methods as compare_steering_methods,
)
from .metrics import (
    logit_diff as logit_diff,
    next_token_logprob as next_token_logprob,
    next_token_loss as next_token_loss,
    token_logprob as token_logprob,
)
from .output_screen import logit_lens_screen as logit_lens_screen, output_scores as output_scores
from .probe import ConceptProbe as ConceptProbe
from .repetition import (
    RepetitionRule as RepetitionRule,
    RepetitionScores as RepetitionScores,
    distinct_n as distinct_n,
    repeated_ngram_share as repeated_ngram_share,
    repetition_scores as repetition_scores,
)
from .splice import spliced as spliced
from .steerer import Steerer as Steerer
from .steering import steer as steer
from .sweep import SweepConfig as SweepConfig, steering_sweep as steering_sweep
