# Public names of saelab: what a notebook or a user calls, imported on first use (lazy_loader
# reads this stub); `name as name` marks each as re-exported for type checkers. The packages
# are listed so that `saelab.viz.save_figure` works after a bare `import saelab`; other
# modules stay importable by their full path (`from saelab.train.checkpoint import list_checkpoints`).
from . import (
    analysis as analysis,
    autointerp as autointerp,
    corpus as corpus,
    crossmodel as crossmodel,
    dashboards as dashboards,
    data as data,
    evals as evals,
    evolution as evolution,
    exercises as exercises,
    extract as extract,
    interventions as interventions,
    lessons as lessons,
    profiles as profiles,
    saes as saes,
    store as store,
    train as train,
    viz as viz,
)
from .analysis import specialists as specialists
from .data import load_dataset as load_dataset
from .extract import (
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
