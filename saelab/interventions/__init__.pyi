# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers. Modules and functions never
# share a name (a submodule, once imported, would shadow the function of the same name).
from . import edits as edits, splice as splice, stats as stats, steering as steering
from .edits import add_to_features as add_to_features, check_features as check_features, set_features as set_features
from .splice import FeatureEdit as FeatureEdit, Splice as Splice, splice_delta as splice_delta, spliced as spliced
from .stats import FeatureStats as FeatureStats, feature_stats as feature_stats
from .steering import SteerMode as SteerMode, raw_strengths as raw_strengths, steer as steer
