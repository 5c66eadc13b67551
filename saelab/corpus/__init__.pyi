# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import config as config, counting as counting, filters as filters, mix as mix, sources as sources
from .config import (
    CORPUS_SOURCES as CORPUS_SOURCES,
    DEFAULT_FRACTIONS as DEFAULT_FRACTIONS,
    SOURCES as SOURCES,
    CorpusConfig as CorpusConfig,
    Document as Document,
)
from .filters import DocumentFilter as DocumentFilter, chunk_text as chunk_text, junk_reason as junk_reason
from .mix import (
    CorpusMix as CorpusMix,
    build_mix as build_mix,
    corpus_fingerprint as corpus_fingerprint,
    describe_mix as describe_mix,
    iter_documents as iter_documents,
    iter_tagged_documents as iter_tagged_documents,
    labelled_ids_in_corpus as labelled_ids_in_corpus,
)
from .sources.fortunes import fortune_language as fortune_language
from .sources.model_samples import (
    DEFAULT_SAMPLE_PROMPTS as DEFAULT_SAMPLE_PROMPTS,
    sample_model_texts as sample_model_texts,
)
