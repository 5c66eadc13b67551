"""Setup step: system packages from Debian that pip cannot provide.

* A Chromium, which kaleido needs for figure export (and the browser tests use).
* Debian's fortune databases (English and other languages), one ingredient of the offline
  training corpus (see saelab/corpus/). The corpus works without them, but the mix and
  hence the activation-store cache key differ, so setup installs them where it can.

Installs with apt-get when running as root; otherwise says exactly what is missing. Never
fatal: everything else works without these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from saelab._util.browser import INSTALL_HINT, find_chromium

FORTUNE_PACKAGES = (
    "fortunes", "fortunes-min", "fortunes-de", "fortunes-es", "fortunes-it",
    "fortunes-ru", "fortunes-br", "fortunes-zh", "fortunes-debian-hints",
)
FORTUNE_MARKERS = ("/usr/share/games/fortunes/fortunes", "/usr/share/games/fortunes/de", "/usr/share/games/fortunes/ru")


def _can_apt() -> bool:
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def _apt_install(packages: list[str]) -> bool:
    print(f"[setup] installing Debian packages: {' '.join(packages)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    for cmd in (["apt-get", "update", "-qq"], install):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return True


def main() -> int:
    missing: list[str] = []
    if find_chromium() is None:
        missing.append("chromium")
    fortunes_present = all(Path(p).exists() for p in FORTUNE_MARKERS)
    if not fortunes_present:
        missing.extend(FORTUNE_PACKAGES)
    if missing and _can_apt():
        _apt_install(missing)
    chromium = find_chromium()
    if chromium is None:
        print(f"[setup] WARNING: {INSTALL_HINT}", file=sys.stderr)
    else:
        print(f"[setup] Chromium for figure export: {chromium}")
    if not all(Path(p).exists() for p in FORTUNE_MARKERS):
        print(
            "[setup] WARNING: Debian's fortune databases are missing; the offline training corpus "
            f"will lack them. As root: apt-get install -y {' '.join(FORTUNE_PACKAGES)}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
