# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .accumulators import MASSIVE_NORM_RATIO as MASSIVE_NORM_RATIO
from .harness import (
    EvalResult as EvalResult,
    compare as compare,
    evaluate_sae as evaluate_sae,
    evaluate_saes as evaluate_saes,
)
from .metrics import (
    dead_fraction as dead_fraction,
    dense_fraction as dense_fraction,
    density_histogram as density_histogram,
    explained_variance as explained_variance,
    feature_density as feature_density,
    l0 as l0,
    mse as mse,
    shared_density_histograms as shared_density_histograms,
)
