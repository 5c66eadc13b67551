"""saelab's public surface, the names its ``__init__.pyi`` stubs list (lazy_loader reads them).

Every saelab name that the notebooks, the READMEs' Python blocks, ``bench/`` and ``scripts/``
use resolves the way a fresh ``import saelab`` resolves it: through a stub, or through a
module that the same code imports explicitly. The stubs list no private name, no validator
and no module file below the top level, and every name they list exists. ``import saelab``
stays cheap. Nothing here loads a model: resolving a name only imports its module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "saelab"
STUBS = sorted(PACKAGE.rglob("__init__.pyi"))
# The docs/ pages too: their Python blocks are as much the public face as the README's.
READMES = (
    "README.md",
    "saelab/README.md",
    "data/README.md",
    "bench/README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
)
# Module files that the top level lists beside its packages, because notebooks and the README
# reach into them as namespaces (`saelab.profiles.get()`, `saelab.saes.sae_neuronpedia_url`).
TOP_LEVEL_MODULES = {"data", "exercises", "lessons", "profiles", "saes"}
HEAVY = ("torch", "transformer_lens", "sae_lens", "pandas", "plotly", "scipy", "numpy")


class Use(NamedTuple):
    """One saelab name a piece of code uses: ``from`` imports ``name`` from ``module``;
    ``attr`` reads the dotted ``path`` from a module bound to a local name."""

    kind: str
    module: str
    path: tuple[str, ...]


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]
    # IPython magics and shell lines are not Python; blank them, keeping line numbers.
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def code_samples() -> Iterator[tuple[str, str]]:
    """(label, Python source) of every notebook, README Python block, bench and script file."""
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        yield nb.name, _notebook_code(nb)
    for readme in READMES:
        blocks = re.findall(r"```python\n(.*?)```", (ROOT / readme).read_text(encoding="utf-8"), re.S)
        for i, block in enumerate(blocks, start=1):
            yield f"{readme} block {i}", block
    for path in sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("scripts/*.py")]):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def _bindings(tree: ast.AST) -> tuple[dict[str, str], set[str], list[Use]]:
    """Local names bound to saelab modules (or to names inside them), the modules the code
    imports explicitly, and its ``from saelab... import`` uses."""
    bound: dict[str, str] = {}
    imported: set[str] = set()
    uses: list[Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "saelab":
                    imported.add(alias.name)
                    bound[alias.asname or "saelab"] = alias.name if alias.asname else "saelab"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "saelab":
            module = node.module or ""
            imported.add(module)
            for alias in node.names:
                uses.append(Use("from", module, (alias.name,)))
                bound[alias.asname or alias.name] = f"{module}.{alias.name}"
    return bound, imported, uses


def saelab_uses(code: str) -> tuple[list[Use], set[str]]:
    """The saelab names ``code`` uses, and the saelab modules it imports explicitly."""
    tree = ast.parse(code)
    bound, imported, uses = _bindings(tree)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue  # only the outermost node of each chain
        parts: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and current.id in bound:
            uses.append(Use("attr", bound[current.id], tuple(reversed(parts))))
    return uses, imported


def _is_lazy(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None) or ""
    return file.endswith("__init__.py") and Path(file).with_suffix(".pyi").exists()


def _step(obj: object, name: str, imported: set[str], from_import: bool) -> object:
    """``obj.name`` as a fresh interpreter sees it after the code's own imports."""
    if not isinstance(obj, ModuleType):
        return getattr(obj, name)
    if _is_lazy(obj) and name in dir(obj):
        return getattr(obj, name)  # what the stub lists wins over a submodule of the same name
    full = f"{obj.__name__}.{name}"
    is_package = hasattr(obj, "__path__")
    if is_package and (full in imported or any(m.startswith(full + ".") for m in imported)):
        return importlib.import_module(full)
    if is_package and from_import and importlib.util.find_spec(full) is not None:
        return importlib.import_module(full)  # `from pkg import submodule` imports it
    if _is_lazy(obj):
        raise AttributeError(f"{obj.__name__}'s stub does not list {name!r}")
    return getattr(obj, name)


def resolve(use: Use, imported: set[str]) -> None:
    """Raise if ``use`` would fail in a fresh interpreter; attributes of a class or function
    at the end of a chain are not followed (they may be instance attributes)."""
    parts = use.module.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, name in enumerate([*parts[1:], *use.path]):
        if not isinstance(obj, ModuleType):
            return
        from_import = use.kind == "from" and i == len(parts) - 1
        obj = _step(obj, name, imported, from_import or i < len(parts) - 1)


def _resolution_failures(uses: list[Use], imported: set[str]) -> list[str]:
    failures = []
    for use in dict.fromkeys(uses):
        try:
            resolve(use, imported)
        except (AttributeError, ImportError) as error:
            failures.append(f"{use.module}.{'.'.join(use.path)} ({use.kind}): {error}")
    return failures


SAMPLES = list(code_samples())


@pytest.mark.parametrize(("label", "code"), SAMPLES, ids=[label for label, _ in SAMPLES])
def test_every_saelab_name_the_code_uses_resolves(label, code):
    uses, imported = saelab_uses(code)
    failures = _resolution_failures(uses, imported)
    assert not failures, f"{label}:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("label", "code"),
    [s for s in SAMPLES if s[0].endswith(".ipynb") or s[0].startswith(READMES)],
    ids=[label for label, _ in SAMPLES if label.endswith(".ipynb") or label.startswith(READMES)],
)
def test_notebooks_and_readmes_use_no_private_name(label, code):
    uses, imported = saelab_uses(code)
    dotted = [".".join([use.module, *use.path]) for use in uses] + sorted(imported)
    private = [name for name in dotted if any(part.startswith("_") for part in name.split("."))]
    assert not private, f"{label} reaches private names: {private}"


def test_the_resolver_catches_a_name_no_stub_lists():
    uses, imported = saelab_uses("import saelab\nsaelab.analysis.rankings.frequent\nsaelab.analysis.frequent\n")
    assert len(uses) == 2
    assert _resolution_failures(uses, imported) == [
        "saelab.analysis.rankings.frequent (attr): saelab.analysis's stub does not list 'rankings'"
    ]
    uses, imported = saelab_uses("import saelab.analysis.rankings\nsaelab.analysis.rankings.frequent\n")
    assert _resolution_failures(uses, imported) == []
    uses, imported = saelab_uses("from saelab.interventions import check_features\n")
    assert len(_resolution_failures(uses, imported)) == 1


def _stub_imports(stub: Path) -> Iterator[tuple[str | None, str]]:
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield node.module, alias.asname or alias.name


def _package(stub: Path) -> str:
    return ".".join(stub.parent.relative_to(ROOT).parts)


@pytest.mark.parametrize("stub", STUBS, ids=_package)
def test_stubs_list_no_private_name_validator_or_module_file(stub):
    for module, name in _stub_imports(stub):
        assert not name.startswith("_"), f"{_package(stub)} exports the private {name}"
        assert not name.startswith("check_"), f"{_package(stub)} exports the validator {name}"
        if module is None:
            is_package = (stub.parent / name / "__init__.py").exists()
            top_level_namespace = stub.parent == PACKAGE and name in TOP_LEVEL_MODULES
            assert is_package or top_level_namespace, f"{_package(stub)} re-exports the module {name}"


@pytest.mark.parametrize("stub", STUBS, ids=_package)
def test_every_name_a_stub_lists_exists(stub):
    package = importlib.import_module(_package(stub))
    listed = [name for _, name in _stub_imports(stub)]
    assert sorted(set(listed)) == sorted(n for n in dir(package) if n != "__version__")
    missing = [name for name in listed if not hasattr(package, name)]
    assert not missing


def test_import_saelab_is_cheap():
    code = f"import sys, saelab; print([m for m in {HEAVY!r} if m in sys.modules]); print(dir(saelab))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    loaded, names = out.splitlines()
    assert loaded == "[]"
    assert "__version__" in names and "load_model" in names
