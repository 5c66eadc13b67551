"""Source ``docstrings``: module, class and function docstrings of the declared packages
(``CorpusConfig.packages``): technical English prose, maths, examples."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.environment import CorpusEnvironment, distribution_files
from saelab.corpus.filters import DocumentFilter, chunk_text
from saelab.corpus.sources.files import read_text, shuffled_files, source_rng


def documents(cfg: CorpusConfig, filt: DocumentFilter, env: CorpusEnvironment) -> Iterator[Document]:
    files = {key: path for key, path in distribution_files(cfg.packages, env).items() if key.endswith(".py")}
    return _documents(cfg, filt, shuffled_files(files, source_rng(cfg, "docstrings")))


def _documents(cfg: CorpusConfig, filt: DocumentFilter, paths: list[Path]) -> Iterator[Document]:
    # A generator of its own, so that documents() checks the declared packages when called.
    for path in paths:
        for name, doc in _docstrings(path):
            for i, chunk in enumerate(chunk_text(doc, cfg.max_doc_chars)):
                text = filt(chunk)
                if text is not None:
                    yield Document(text, "docstrings", f"{path.name}:{name}#{i}")


def _docstrings(path: Path, max_bytes: int = 1_000_000) -> list[tuple[str, str]]:
    """(qualified name, cleaned docstring) of a module and its classes and functions."""
    try:
        if path.stat().st_size > max_bytes:  # generated tables; slow to parse, little prose
            return []
        source = read_text(path)
        if source is None:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old code
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, OSError):
        return []
    out = []
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, kinds):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                out.append((getattr(node, "name", "<module>"), doc))
    return out
