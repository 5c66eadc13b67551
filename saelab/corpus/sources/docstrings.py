"""Source ``docstrings``: module, class and function docstrings of the installed packages
(technical English prose, maths, examples)."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.filters import DocumentFilter, chunk_text
from saelab.corpus.sources.files import package_files, read_text, shuffled, source_rng


def _package_py_files() -> list[str]:
    return [p for p in package_files() if p.endswith(".py")]


def documents(cfg: CorpusConfig, filt: DocumentFilter) -> Iterator[Document]:
    for path in shuffled(_package_py_files(), source_rng(cfg, "docstrings")):
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
