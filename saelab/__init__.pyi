# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    analysis as analysis,
    autointerp as autointerp,
    corpus as corpus,
    data as data,
    evals as evals,
    evolution as evolution,
    exercises as exercises,
    extract as extract,
    interventions as interventions,
    lessons as lessons,
    models as models,
    profiles as profiles,
    saes as saes,
    store as store,
    train as train,
    viz as viz,
)
from ._util.paths import cache_dir as cache_dir
from .analysis import specialists as specialists
from .data import load_dataset as load_dataset
from .evals import evaluate_sae as evaluate_sae
from .extract import (
    PerTokenFeatures as PerTokenFeatures,
    cached_per_token as cached_per_token,
    extract_features as extract_features,
    extract_features_multi as extract_features_multi,
    extract_per_token as extract_per_token,
    extract_per_token_multi as extract_per_token_multi,
)
from .lessons import dense_vs_sparse as dense_vs_sparse
from .models import load_model as load_model
from .notebook import labelled_texts as labelled_texts, output_folders as output_folders
from .saes import load_sae as load_sae

__version__: str
