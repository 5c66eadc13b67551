"""What the offline mix reads from this machine, checked against what the config declares.

The corpus must be the same on every machine that ran ``make setup``, so no source reads
"whatever is installed"; each reads a declared list, pinned:

* ``docstrings`` and ``package_docs`` read the files of the Python distributions in
  ``CorpusConfig.packages``, as each distribution's ``RECORD`` lists them;
* ``fortunes_en`` and ``fortunes_intl`` read the files of the Debian packages in
  ``CorpusConfig.fortune_packages``, as dpkg lists them (so neither an undeclared fortune
  package nor a debconf choice of which databases to index changes the mix);
* ``python_stdlib`` reads the standard library of the Python that runs. Nothing pins it, so
  its version and a digest of its files enter :func:`saelab.corpus.corpus_fingerprint`.

A declared package that is missing, or installed at another version, raises
:class:`CorpusSourceError` naming the fix; the mix never shrinks or changes silently.
:class:`CorpusEnvironment` says where to look (tests point it at fake environments). Where
is not part of the fingerprint: the pins decide what is read.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saelab.corpus.config import FORTUNE_SOURCES, PACKAGE_SOURCES, Pins

if TYPE_CHECKING:
    from importlib.metadata import Distribution


class CorpusSourceError(RuntimeError):
    """A declared source of the offline mix is missing, or differs from its pin."""


@dataclass(frozen=True)
class CorpusEnvironment:
    """Where the offline mix finds its declared sources (the defaults: this interpreter and
    this machine)."""

    site_paths: tuple[str, ...] | None = None
    """Folders searched for the declared Python distributions; None: ``sys.path``."""
    dpkg_dir: str = "/var/lib/dpkg"
    """Debian's package database: ``status`` (installed versions) and ``info/<name>.list``
    (each package's files)."""
    stdlib_dir: str | None = None
    """The standard library's folder; None: this interpreter's (``sysconfig``'s ``stdlib``)."""


def distribution_files(pins: Pins, env: CorpusEnvironment) -> dict[str, Path]:
    """Every file of the declared distributions: key (the path ``RECORD`` gives, relative to
    the install folder, so it does not depend on where the environment lives) -> path."""
    files: dict[str, Path] = {}
    for dist in declared_distributions(pins, env):
        for entry in dist.files or []:
            key = entry.as_posix()
            if not key.startswith(".."):  # console scripts in bin/: not documentation
                files.setdefault(key, Path(str(dist.locate_file(entry))))
    return files


def declared_distributions(pins: Pins, env: CorpusEnvironment) -> list[Distribution]:
    """The installed distribution of every pin, each checked: present, at the pinned version,
    with a ``RECORD`` of its files. Raises :class:`CorpusSourceError` naming every mismatch."""
    search = list(env.site_paths) if env.site_paths is not None else sys.path
    found, problems = [], []
    for name, version in pins:
        dist = next(iter(importlib.metadata.distributions(name=name, path=search)), None)
        if dist is None:
            problems.append(f"{name} is not installed")
        elif dist.version != version:
            problems.append(f"{name} is installed at {dist.version}, not {version}")
        elif dist.read_text("RECORD") is None:  # cheaper than parsing dist.files, for the fingerprint's check
            problems.append(f"{name} {version} has no RECORD listing its files")
        else:
            found.append(dist)
    if problems:
        raise CorpusSourceError(
            f"The offline corpus reads the docs of the declared packages (CorpusConfig.packages), and this "
            f"environment does not match: {'; '.join(problems)}. Run `make setup` to install the pinned "
            "requirements (if you changed a pin in requirements.txt on purpose, change it in "
            f"saelab.corpus.config.CORPUS_PACKAGES too). To leave these sources out, give {list(PACKAGE_SOURCES)} "
            "no share in CorpusConfig.fractions."
        )
    return found


def debian_package_files(pins: Pins, env: CorpusEnvironment) -> list[Path]:
    """Every path the declared Debian packages installed (folders included), each package
    checked: installed, at the pinned version. Raises :class:`CorpusSourceError` otherwise."""
    installed = _dpkg_installed(Path(env.dpkg_dir))
    if installed is None:
        problems = [f"there is no Debian package database at {env.dpkg_dir}"]
    else:
        problems = []
        for name, version in pins:
            if name not in installed:
                problems.append(f"{name} is not installed")
            elif installed[name] != version:
                problems.append(f"{name} is installed at {installed[name]}, not {version}")
    if problems:
        names = " ".join(name for name, _ in pins)
        raise CorpusSourceError(
            f"The offline corpus reads Debian's fortune databases (CorpusConfig.fortune_packages), and this "
            f"machine does not match: {'; '.join(problems)}. Run `make setup` as root, which runs "
            f"`apt-get install -y {names}`, or run that yourself with sudo. If your Debian release ships other "
            "versions, declare those in CorpusConfig.fortune_packages (a different corpus, with its own "
            f"fingerprint). To leave fortunes out, give {list(FORTUNE_SOURCES)} no share in CorpusConfig.fractions."
        )
    info = Path(env.dpkg_dir) / "info"
    out = []
    for name, _ in pins:
        # Architecture-independent packages list their files in <name>.list, others in <name>:<arch>.list.
        for listing in [info / f"{name}.list", *sorted(info.glob(f"{name}:*.list"))]:
            if listing.is_file():
                out.extend(Path(line) for line in listing.read_text(encoding="utf-8").splitlines() if line)
    return out


def _dpkg_installed(dpkg_dir: Path) -> dict[str, str] | None:
    """Installed Debian packages -> version, from dpkg's ``status`` file (None without one)."""
    try:
        text = (dpkg_dir / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    out = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out[fields["Package"]] = fields.get("Version", "")
    return out
