"""The offline sources, one file each, and the table that names them.

Each source's ``documents(...)`` yields :class:`~saelab.corpus.config.Document` lazily in a
seeded order. Only the config can leave a source out (``documents`` returns None: no model
samples or no labelled texts asked for); a declared source that this machine lacks raises
:class:`~saelab.corpus.environment.CorpusSourceError` instead of shrinking the mix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from saelab.corpus.config import SOURCES, CorpusConfig, Document
from saelab.corpus.environment import CorpusEnvironment
from saelab.corpus.filters import DocumentFilter
from saelab.corpus.sources import docstrings, fortunes, labelled, model_samples, package_docs, python_stdlib

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer


def offline_documents(
    cfg: CorpusConfig, filt: DocumentFilter, model: HookedTransformer | None, env: CorpusEnvironment
) -> dict[str, Iterator[Document]]:
    """The document stream of every offline source that has a positive share and is in use."""
    factories: dict[str, Callable[[], Iterator[Document] | None]] = {
        "python_stdlib": lambda: python_stdlib.documents(cfg, filt, env),
        "docstrings": lambda: docstrings.documents(cfg, filt, env),
        "package_docs": lambda: package_docs.documents(cfg, filt, env),
        "fortunes_en": lambda: fortunes.documents(cfg, filt, env, english=True),
        "fortunes_intl": lambda: fortunes.documents(cfg, filt, env, english=False),
        "labelled": lambda: labelled.documents(cfg, filt),
        "model_samples": lambda: model_samples.documents(cfg, filt, model),
    }
    streams = {}
    for name in SOURCES:
        if cfg.fractions.get(name, 0) <= 0:
            continue
        docs = factories[name]()
        if docs is not None:
            streams[name] = docs
    return streams
