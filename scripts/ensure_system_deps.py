"""Setup step: system packages from Debian that pip cannot provide.

* A Chromium, which kaleido needs for figure export (and the browser tests use).
* Debian's fortune databases (English and other languages), a declared ingredient of the
  offline training corpus: the packages and versions in saelab.corpus.config.FORTUNE_PACKAGES.
  Building the default corpus stops with an error naming them while they are missing, so
  that the mix is the same on every machine; setup installs them, at those versions.

Installs with apt-get when running as root; otherwise says exactly what is missing. Never
fatal: everything but the default offline corpus works without these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from saelab._util.browser import INSTALL_HINT, find_chromium
from saelab.corpus.config import FORTUNE_PACKAGES
from saelab.corpus.environment import CorpusEnvironment, CorpusSourceError, debian_package_files


def _fortunes_problem() -> str | None:
    """Why the declared fortune packages are not installed as pinned (None when they are)."""
    try:
        debian_package_files(FORTUNE_PACKAGES, CorpusEnvironment())
    except CorpusSourceError as err:
        return str(err)
    return None


def _can_apt() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def _apt_install(groups: list[list[str]]) -> None:
    """Install each group with apt-get, separately, so that a pinned version apt cannot find
    does not keep the others (Chromium) out."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL).returncode != 0:
        return
    for packages in groups:
        print(f"[setup] installing Debian packages: {' '.join(packages)} ...", flush=True)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    missing: list[list[str]] = []
    if find_chromium() is None:
        missing.append(["chromium"])
    if _fortunes_problem() is not None:
        missing.append([f"{name}={version}" for name, version in FORTUNE_PACKAGES])  # apt's exact-version form
    if missing and _can_apt():
        _apt_install(missing)
    chromium = find_chromium()
    if chromium is None:
        print(f"[setup] WARNING: {INSTALL_HINT}", file=sys.stderr)
    else:
        print(f"[setup] Chromium for figure export: {chromium}")
    problem = _fortunes_problem()
    if problem is not None:
        print(f"[setup] WARNING: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
