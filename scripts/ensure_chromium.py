"""Setup step: make sure kaleido can find a Chromium, installing Debian's package when root.

Never fatal: everything but figure export and the browser tests works without it, so we
say clearly what is missing instead of failing the whole setup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from saelab.browser import INSTALL_HINT, find_chromium


def _apt_install() -> bool:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    print("[setup] no Chromium found; installing Debian's `chromium` package (apt-get) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            return False
    return True


def main() -> int:
    path = find_chromium()
    if path is None and _apt_install():
        path = find_chromium()
    if path is None:
        print(f"[setup] WARNING: {INSTALL_HINT}", file=sys.stderr)
        return 0
    print(f"[setup] Chromium for figure export: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
