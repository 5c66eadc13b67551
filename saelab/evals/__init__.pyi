# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import accumulators as accumulators, ce_loss as ce_loss, harness as harness, metrics as metrics
from .accumulators import (
    MASSIVE_NORM_RATIO as MASSIVE_NORM_RATIO,
    CELossMetrics as CELossMetrics,
    DownstreamStats as DownstreamStats,
    ReconstructionStats as ReconstructionStats,
)
from .ce_loss import MissingBOSWarning as MissingBOSWarning, ce_loss_metrics as ce_loss_metrics
from .harness import EvalResult as EvalResult, compare as compare, evaluate_sae as evaluate_sae
from .metrics import (
    DEFAULT_DENSE_THRESHOLD as DEFAULT_DENSE_THRESHOLD,
    DEFAULT_HISTOGRAM_BINS as DEFAULT_HISTOGRAM_BINS,
    DensityHistogram as DensityHistogram,
    dead_fraction as dead_fraction,
    dense_fraction as dense_fraction,
    density_histogram as density_histogram,
    explained_variance as explained_variance,
    feature_density as feature_density,
    fvu as fvu,
    l0 as l0,
    mse as mse,
    shared_density_histograms as shared_density_histograms,
)
