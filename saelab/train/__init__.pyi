# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .batchtopk import BatchTopKConfig as BatchTopKConfig
from .config import TrainConfig as TrainConfig
from .export import save_sae as save_sae
from .jumprelu import JumpReLUConfig as JumpReLUConfig
from .matryoshka import MatryoshkaBatchTopKConfig as MatryoshkaBatchTopKConfig
from .pipeline import (
    activation_store as activation_store,
    evaluate_saved as evaluate_saved,
    store_source as store_source,
    train_on_store as train_on_store,
    train_sweep as train_sweep,
)
from .registry import config_for as config_for, make_sae as make_sae
from .relu import ReLUConfig as ReLUConfig
from .run_folders import clear_run as clear_run, run_folder as run_folder
from .snapshots import list_snapshots as list_snapshots, load_snapshots as load_snapshots
from .sweep import SweepResult as SweepResult, fit_sweep as fit_sweep, sweep_folder as sweep_folder
from .thresholds import ThresholdResult as ThresholdResult, adjust_thresholds as adjust_thresholds
from .topk import TopKConfig as TopKConfig
from .trainer import RunConfig as RunConfig, fit as fit
