# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import (
    backends as backends,
    collect as collect,
    decompositions as decompositions,
    explainers as explainers,
    replication as replication,
    scorers as scorers,
    sources as sources,
    summary as summary,
)
from .backends import LocalBackend as LocalBackend, OpenAIBackend as OpenAIBackend, load_embedder as load_embedder
from .collect import collect_examples as collect_examples
from .config import ExamplesConfig as ExamplesConfig
from .decompositions import Decomposition as Decomposition
from .example_set import ExampleSet as ExampleSet
from .explanation import Explanation as Explanation
from .feature_examples import Context as Context, FeatureExamples as FeatureExamples
from .replication import (
    ReplicationConfig as ReplicationConfig,
    compare_decompositions as compare_decompositions,
    paper_ordering_holds as paper_ordering_holds,
    replication_table as replication_table,
)
from .run import (
    AutointerpConfig as AutointerpConfig,
    explain_features as explain_features,
    records_frame as records_frame,
    run_autointerp as run_autointerp,
)
from .sources import StoreSource as StoreSource, TextSource as TextSource
from .summary import score_summary as score_summary
