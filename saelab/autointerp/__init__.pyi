# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from . import backends as backends, explainers as explainers, scorers as scorers
from .backends import LocalBackend as LocalBackend, OpenAIBackend as OpenAIBackend, load_embedder as load_embedder
from .collect import collect_examples as collect_examples
from .config import ExamplesConfig as ExamplesConfig
from .decompositions import sae_directions as sae_directions
from .example_set import ExampleSet as ExampleSet
from .replication import (
    ReplicationConfig as ReplicationConfig,
    compare_decompositions as compare_decompositions,
    paper_ordering_holds as paper_ordering_holds,
    replication_table as replication_table,
)
from .run import AutointerpConfig as AutointerpConfig, run_autointerp as run_autointerp
from .sources import StoreSource as StoreSource, TextSource as TextSource
from .steering_judge import (
    CATEGORY_DESCRIPTIONS as CATEGORY_DESCRIPTIONS,
    SteeringJudge as SteeringJudge,
    SteeringJudgeConfig as SteeringJudgeConfig,
)
from .summary import score_summary as score_summary
