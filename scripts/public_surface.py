"""Count saelab's public surface: the names every ``__init__.pyi`` stub exports.

lazy_loader reads these stubs, so a stub's names are exactly what ``dir(saelab.x)`` lists and
what ``saelab.x.name`` resolves without an explicit import. A ``from . import sub`` line
re-exports a submodule; every other ``from .mod import name`` line exports one name.

    python scripts/public_surface.py                 # counts on the work tree, per package
    python scripts/public_surface.py --rev HEAD~3    # counts at a commit
    python scripts/public_surface.py --since REV     # names that left (and joined) since REV
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
STUB = "__init__.pyi"


class Export(NamedTuple):
    """One public name of one package."""

    package: str
    name: str
    submodule: bool


def stub_exports(package: str, source: str) -> list[Export]:
    """The names a stub's imports export, in file order. Plain annotations (``__version__: str``)
    are left out: lazy_loader does not load them, the package's ``__init__.py`` defines them."""
    exports = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                exports.append(Export(package, alias.asname or alias.name, node.module is None))
    return exports


def package_of(stub_path: str) -> str:
    """``saelab/analysis/__init__.pyi`` -> ``saelab.analysis``."""
    return ".".join(Path(stub_path).parent.parts)


def stubs_in_tree() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted((ROOT / "saelab").rglob(STUB))}


def stubs_at(rev: str) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout

    paths = [p for p in git("ls-tree", "-r", "--name-only", rev, "saelab").splitlines() if p.endswith(STUB)]
    return {p: git("show", f"{rev}:{p}") for p in sorted(paths)}


def surface(stubs: dict[str, str]) -> list[Export]:
    return [e for path, source in stubs.items() for e in stub_exports(package_of(path), source)]


def report(exports: list[Export], label: str) -> None:
    packages = sorted({e.package for e in exports})
    for package in packages:
        mine = [e for e in exports if e.package == package]
        subs = sum(e.submodule for e in mine)
        print(f"  {package:<32} {len(mine):>4} names, {subs:>3} submodules")
    print(f"{label}: {len(exports)} names, {sum(e.submodule for e in exports)} of them submodules")


def changes(old: list[Export], new: list[Export]) -> None:
    """Per package, the names that left the surface and those that joined it."""
    before = {(e.package, e.name): e for e in old}
    after = {(e.package, e.name): e for e in new}
    for package in sorted({p for p, _ in before.keys() | after.keys()}):
        gone = sorted(n for p, n in before.keys() - after.keys() if p == package)
        joined = sorted(n for p, n in after.keys() - before.keys() if p == package)
        if gone:
            subs = [n for n in gone if before[(package, n)].submodule]
            names = [n for n in gone if not before[(package, n)].submodule]
            print(f"{package}: left {len(gone)}")
            if subs:
                print(f"  submodules: {', '.join(subs)}")
            if names:
                print(f"  names: {', '.join(names)}")
        if joined:
            print(f"{package}: joined {', '.join(joined)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="count the stubs of this git revision instead of the work tree")
    parser.add_argument("--since", help="list the names that left or joined since this git revision")
    args = parser.parse_args()
    current = surface(stubs_at(args.rev) if args.rev else stubs_in_tree())
    report(current, args.rev or "work tree")
    if args.since:
        old = surface(stubs_at(args.since))
        print()
        report(old, args.since)
        print()
        changes(old, current)


if __name__ == "__main__":
    main()
