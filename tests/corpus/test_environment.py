"""saelab.corpus.environment: the offline mix reads only declared, pinned packages. An extra
installed package changes neither the texts nor the fingerprint; a declared one that is
missing or at another version is an error that names the fix; another Python is another key."""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

import pytest

from saelab.corpus.config import CORPUS_PACKAGES, CorpusConfig
from saelab.corpus.environment import CorpusEnvironment, CorpusSourceError
from saelab.corpus.mix import build_mix, corpus_fingerprint

REPO = Path(__file__).resolve().parents[2]
PACKAGE_ONLY = {"docstrings": 1.0, "package_docs": 1.0}
FORTUNES_ONLY = {"fortunes_en": 1.0, "fortunes_intl": 1.0}
# requirements.txt pins these (and pytest's plugins) for tests, lint and JupyterLab; their docs
# must never enter the corpus, so that adding a tool leaves it as it was.
TOOLS = {"jupyterlab", "pytest", "ruff", "pyright", "playwright"}


def is_tool(name: str) -> bool:
    return name in TOOLS or name.startswith("pytest-")


def install(site: Path, name: str, version: str, words: str) -> None:
    """A fake installed distribution: a module with docstrings, a README, METADATA and RECORD."""
    module = name.replace("-", "_")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True)
    files = {
        f"{module}/__init__.py": f'"""The {name} module: {words}."""\n\n\ndef run():\n    """Run {name}."""\n',
        f"{module}/README.md": f"# {name}\n\nA long guide to {words}, written for people who read guides.\n",
        f"{info.name}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nAbout {name}: {words}.\n",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text, encoding="utf-8")
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in [*files, f"{info.name}/RECORD"]), encoding="utf-8")


def texts_of(mix) -> str:
    return "\n".join(mix.texts)


def test_an_extra_installed_package_changes_neither_texts_nor_fingerprint(tmp_path):
    base, extra = tmp_path / "base", tmp_path / "extra"
    install(base, "alpha-lib", "1.0", "folding paper cranes")
    install(extra, "beta-tool", "2.0", "counting lighthouse beams")
    cfg = CorpusConfig(target_tokens=10_000, fractions=PACKAGE_ONLY, packages=(("alpha-lib", "1.0"),))
    plain = CorpusEnvironment(site_paths=(str(base),))
    with_extra = CorpusEnvironment(site_paths=(str(extra), str(base)))  # searched first, too
    a, b = build_mix(cfg, env=plain), build_mix(cfg, env=with_extra)
    assert a.documents == b.documents and a.tokens == b.tokens
    assert corpus_fingerprint(cfg, plain) == corpus_fingerprint(cfg, with_extra)
    assert set(a.provenance()["source"]) == set(PACKAGE_ONLY)
    assert "paper cranes" in texts_of(a) and "lighthouse" not in texts_of(b)
    # Declaring the extra package is what brings it in (and changes the key).
    both = CorpusConfig(
        target_tokens=10_000, fractions=PACKAGE_ONLY, packages=(("alpha-lib", "1.0"), ("beta-tool", "2.0"))
    )
    assert "lighthouse" in texts_of(build_mix(both, env=with_extra))
    assert corpus_fingerprint(both, with_extra) != corpus_fingerprint(cfg, with_extra)


def test_the_real_mix_ignores_an_extra_installed_package(tmp_path):
    install(tmp_path, "beta-tool", "2.0", "counting lighthouse beams")
    cfg = CorpusConfig(target_tokens=30_000, seed=3)
    here, with_extra = CorpusEnvironment(), CorpusEnvironment(site_paths=(str(tmp_path), *sys.path))
    a, b = build_mix(cfg, env=here), build_mix(cfg, env=with_extra)
    assert a.documents == b.documents
    assert corpus_fingerprint(cfg, here) == corpus_fingerprint(cfg, with_extra)
    assert {"docstrings", "package_docs"} <= set(a.provenance()["source"])
    assert "lighthouse" not in texts_of(b)


def test_a_missing_declared_package_is_an_error_with_the_fix(tmp_path):
    install(tmp_path, "alpha-lib", "1.0", "folding paper cranes")
    cfg = CorpusConfig(target_tokens=5_000, fractions=PACKAGE_ONLY, packages=(("alpha-lib", "1.0"), ("gamma", "3.1")))
    env = CorpusEnvironment(site_paths=(str(tmp_path),))
    for build in (lambda: build_mix(cfg, env=env), lambda: corpus_fingerprint(cfg, env)):
        with pytest.raises(CorpusSourceError, match=r"gamma is not installed.*make setup"):
            build()


def test_a_declared_package_at_another_version_is_an_error_with_the_fix(tmp_path):
    install(tmp_path, "alpha-lib", "1.1", "folding paper cranes")
    cfg = CorpusConfig(target_tokens=5_000, fractions=PACKAGE_ONLY, packages=(("alpha-lib", "1.0"),))
    env = CorpusEnvironment(site_paths=(str(tmp_path),))
    with pytest.raises(CorpusSourceError, match=r"alpha-lib is installed at 1\.1, not 1\.0.*make setup"):
        build_mix(cfg, env=env)
    with pytest.raises(CorpusSourceError, match="make setup"):
        corpus_fingerprint(cfg, env)


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_the_declared_packages_are_the_runtime_requirements_as_pinned():
    pins = requirement_pins()
    declared = dict(CORPUS_PACKAGES)
    assert TOOLS <= set(pins), "requirements.txt no longer pins a tool this test names; update TOOLS"
    assert not any(is_tool(name) for name in declared)
    assert declared == {name: version for name, version in pins.items() if not is_tool(name)}


def write_dpkg(root: Path, packages: dict[str, tuple[str, dict[str, str]]]) -> Path:
    """A fake Debian package database: package -> (version, {installed path: fortunes})."""
    dpkg = root / "dpkg"
    (dpkg / "info").mkdir(parents=True)
    stanzas = []
    for name, (version, files) in packages.items():
        stanzas.append(f"Package: {name}\nStatus: install ok installed\nVersion: {version}\nDescription: x\n")
        listed = []
        for rel, fortunes in files.items():
            path = root / "usr/share/games" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n%\n".join(fortunes) + "\n%\n", encoding="utf-8")
            listed += [str(path.parent), str(path)]
        (dpkg / "info" / f"{name}.list").write_text("\n".join(listed) + "\n", encoding="utf-8")
    (dpkg / "status").write_text("\n".join(stanzas), encoding="utf-8")
    return dpkg


ENGLISH = {"fortunes/science": ["A scientist walks into a library and asks for books.", "Light is fast, news faster."]}
GERMAN = {"fortunes/de/witze": ["Ein Mann geht in eine Bibliothek und fragt nach Büchern.", "Heute ist ein guter Tag!"]}
EXTRA = {"fortunes/mario": ["It's-a me, an undeclared fortune about plumbers and pipes."]}
FORTUNE_PINS = (("fortunes-a", "1.0"), ("fortunes-de", "0.35-1"))


def test_fortunes_come_from_the_declared_debian_packages_only(tmp_path):
    declared = {"fortunes-a": ("1.0", ENGLISH), "fortunes-de": ("0.35-1", GERMAN)}
    plain = CorpusEnvironment(dpkg_dir=str(write_dpkg(tmp_path / "plain", declared)))
    more = CorpusEnvironment(dpkg_dir=str(write_dpkg(tmp_path / "more", {**declared, "fortunes-mario": ("9", EXTRA)})))
    cfg = CorpusConfig(target_tokens=2_000, fractions=FORTUNES_ONLY, fortune_packages=FORTUNE_PINS)
    a, b = build_mix(cfg, env=plain), build_mix(cfg, env=more)
    assert a.texts == b.texts and corpus_fingerprint(cfg, plain) == corpus_fingerprint(cfg, more)
    assert sorted(a.texts) == sorted(ENGLISH["fortunes/science"] + GERMAN["fortunes/de/witze"])
    assert {d.source for d in a.documents if "Bibliothek" in d.text} == {"fortunes_intl"}


def test_a_missing_or_other_fortune_package_is_an_error_with_the_fix(tmp_path):
    cfg = CorpusConfig(target_tokens=2_000, fractions=FORTUNES_ONLY, fortune_packages=FORTUNE_PINS)
    other = CorpusEnvironment(dpkg_dir=str(write_dpkg(tmp_path, {"fortunes-a": ("1.1", ENGLISH)})))
    problems = r"fortunes-a is installed at 1\.1, not 1\.0; fortunes-de is not installed"
    with pytest.raises(CorpusSourceError, match=problems):
        build_mix(cfg, env=other)
    with pytest.raises(CorpusSourceError, match=r"apt-get install -y fortunes-a fortunes-de"):
        corpus_fingerprint(cfg, other)
    with pytest.raises(CorpusSourceError, match="no Debian package database"):
        build_mix(cfg, env=CorpusEnvironment(dpkg_dir=str(tmp_path / "nowhere")))


def test_the_python_and_its_standard_library_enter_the_fingerprint(tmp_path, monkeypatch):
    (tmp_path / "json").mkdir()
    module = tmp_path / "json" / "decoder.py"
    module.write_text('"""Decode JSON text into Python objects, one value at a time."""\n', encoding="utf-8")
    env = CorpusEnvironment(stdlib_dir=str(tmp_path))
    cfg = CorpusConfig(target_tokens=1_000, fractions={"python_stdlib": 1.0})
    before = corpus_fingerprint(cfg, env)
    assert build_mix(cfg, env=env).texts == [module.read_text(encoding="utf-8").strip()]
    assert corpus_fingerprint(cfg, env) == before
    module.write_text('"""Decode JSON text into Python objects, patched by a distribution."""\n', encoding="utf-8")
    patched = corpus_fingerprint(cfg, env)
    assert patched != before
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.0")
    assert corpus_fingerprint(cfg, env) != patched
