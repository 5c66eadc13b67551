"""The house rules of the package layout (saelab/README.md), checked on the source itself:
imports only go down the layers, the statistics need numpy/scipy/pandas only, and no file
or function outgrows the size limits."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "saelab"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# Lower layers first; a module may import saelab modules of its own layer or below only.
LAYERS: dict[str, int] = {
    "_util": 0,
    "data": 1, "models": 1, "distributed": 1, "notebook": 1,
    "saes": 2,
    "profiles": 3,
    "extract": 4, "forward": 4,
    "lessons": 5, "exercises": 5, "analysis": 5, "evals": 5,
    "corpus": 6, "interventions": 6,
    "store": 7,
    "train": 8, "autointerp": 8, "evolution": 8,
    "viz": 9, "dashboards": 9, "crossmodel": 9,
    "__init__": 10,  # the public face: it imports lazily from every package
}  # fmt: skip

STATISTICS = ("analysis/_checks.py", "analysis/rankings.py", "analysis/significance.py", "analysis/specialists.py",
              "analysis/coactivation.py", "analysis/layers.py")  # fmt: skip
STATISTICS_MAY_IMPORT = {"numpy", "scipy", "pandas", "jaxtyping", "saelab"}


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def top_package(path: Path) -> str:
    part = path.relative_to(ROOT).parts[0]
    return part.removesuffix(".py")


def imported_modules(path: Path) -> list[str]:
    """Absolute module names a file imports at run time (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_the_layers(path):
    own = LAYERS[top_package(path)]
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0] != "saelab" or len(parts) < 2:
            continue
        other = parts[1]
        assert LAYERS[other] <= own, f"{path.relative_to(ROOT)} imports {name}, a higher layer ({other})"


@pytest.mark.parametrize("relative", STATISTICS)
def test_statistics_need_numpy_scipy_and_pandas_only(relative):
    for name in imported_modules(ROOT / relative):
        top = name.split(".")[0]
        allowed = top in STATISTICS_MAY_IMPORT or top in sys.stdlib_module_names or top == "__future__"
        assert allowed, f"{relative} imports {name}"
        if top == "saelab":
            assert name.startswith(("saelab.analysis", "saelab._util")), f"{relative} imports {name}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_stay_small(path):
    source = path.read_text(encoding="utf-8")
    assert source.count("\n") <= MAX_FILE_LINES, f"{path.relative_to(ROOT)} has {source.count(chr(10))} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
            assert length <= MAX_FUNCTION_LINES, f"{where} has {length} lines"
