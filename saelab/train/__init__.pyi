# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    base as base,
    batchtopk as batchtopk,
    calibrate as calibrate,
    checkpoint as checkpoint,
    config as config,
    export as export,
    jumprelu as jumprelu,
    kernels as kernels,
    optim as optim,
    pipeline as pipeline,
    registry as registry,
    relu as relu,
    synthetic as synthetic,
    topk as topk,
    trainer as trainer,
)
from .base import TrainableSAE as TrainableSAE, TrainStepOutput as TrainStepOutput, geometric_median as geometric_median
from .batchtopk import BatchTopKConfig as BatchTopKConfig, TrainableBatchTopKSAE as TrainableBatchTopKSAE
from .calibrate import (
    CalibrationConfig as CalibrationConfig,
    CalibrationResult as CalibrationResult,
    calibrate_sparsity as calibrate_sparsity,
)
from .config import TrainConfig as TrainConfig
from .export import save_sae as save_sae, to_sae_lens as to_sae_lens
from .jumprelu import JumpReLUConfig as JumpReLUConfig, TrainableJumpReLUSAE as TrainableJumpReLUSAE
from .kernels import sparse_decode as sparse_decode
from .optim import (
    lr_lambda as lr_lambda,
    make_optimizer as make_optimizer,
    make_scheduler as make_scheduler,
    train_step as train_step,
)
from .pipeline import (
    activation_store as activation_store,
    evaluate_saved as evaluate_saved,
    store_source as store_source,
    train_on_store as train_on_store,
)
from .registry import (
    Architecture as Architecture,
    Calibration as Calibration,
    architecture_names as architecture_names,
    config_for as config_for,
    get_architecture as get_architecture,
    make_sae as make_sae,
)
from .relu import ReLUConfig as ReLUConfig, TrainableReLUSAE as TrainableReLUSAE
from .run_folders import clear_run as clear_run, run_folder as run_folder
from .snapshots import Snapshot as Snapshot, list_snapshots as list_snapshots, load_snapshots as load_snapshots
from .topk import TopKConfig as TopKConfig, TrainableTopKSAE as TrainableTopKSAE
from .trainer import RunConfig as RunConfig, TrainResult as TrainResult, fit as fit
