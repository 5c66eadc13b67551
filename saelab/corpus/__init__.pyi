# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .config import CorpusConfig as CorpusConfig
from .environment import CorpusSourceError as CorpusSourceError
from .mix import (
    build_mix as build_mix,
    corpus_fingerprint as corpus_fingerprint,
    describe_mix as describe_mix,
    iter_documents as iter_documents,
    labelled_ids_in_corpus as labelled_ids_in_corpus,
)
