# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers. Modules and functions never
# share a name (a submodule, once imported, would shadow the function of the same name).
from . import (
    ablation as ablation,
    attribution as attribution,
    attribution_check as attribution_check,
    category_steering as category_steering,
    circuits as circuits,
    edits as edits,
    effects as effects,
    embedding_attribution as embedding_attribution,
    feature_scale as feature_scale,
    generation as generation,
    logits as logits,
    metrics as metrics,
    probe as probe,
    splice as splice,
    steerer as steerer,
    steering as steering,
    sweep as sweep,
    text_scores as text_scores,
)
from .ablation import Ablation as Ablation, AblationMode as AblationMode, ablate as ablate
from .attribution import (
    Attribution as Attribution,
    Method as Method,
    ablation_effects as ablation_effects,
    attribute as attribute,
)
from .attribution_check import (
    attribution_accuracy as attribution_accuracy,
    attribution_vs_ablation as attribution_vs_ablation,
    prompts_with_next_token as prompts_with_next_token,
)
from .category_steering import CategorySteering as CategorySteering, steer_categories as steer_categories
from .circuits import FeatureCircuit as FeatureCircuit, feature_circuit as feature_circuit
from .edits import add_to_features as add_to_features, check_features as check_features, set_features as set_features
from .effects import FeatureEffects as FeatureEffects, feature_effects as feature_effects
from .embedding_attribution import TokenAttribution as TokenAttribution, token_attribution as token_attribution
from .feature_scale import FeatureStats as FeatureStats, feature_stats as feature_stats
from .generation import Generation as Generation, generate as generate
from .logits import LogitEffect as LogitEffect, logit_effect as logit_effect
from .metrics import (
    Metric as Metric,
    check_scalar as check_scalar,
    logit_diff as logit_diff,
    next_token_logprob as next_token_logprob,
    next_token_loss as next_token_loss,
    token_logprob as token_logprob,
)
from .probe import ConceptProbe as ConceptProbe
from .splice import FeatureEdit as FeatureEdit, Splice as Splice, splice_delta as splice_delta, spliced as spliced
from .steerer import Steerer as Steerer, SteeringOutcome as SteeringOutcome
from .steering import SteerMode as SteerMode, raw_strengths as raw_strengths, steer as steer
from .sweep import (
    SweepConfig as SweepConfig,
    SweepResult as SweepResult,
    steering_sweep as steering_sweep,
    steering_table as steering_table,
)
from .text_scores import ContinuationScores as ContinuationScores, continuation_scores as continuation_scores
