"""Find a Chromium for kaleido (figure export) and headless page checks.

kaleido >= 1 drives a Chromium-based browser through choreographer. It can download
its own Chrome, but this project runs where only package registries are reachable, so
we look for a system browser and never download one.
"""

from __future__ import annotations

import os
import shutil

#: Flags that keep a headless Chromium from touching the network or a GPU.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

INSTALL_HINT = (
    "No Chromium-based browser was found, so figures cannot be exported to PNG/SVG "
    "(kaleido needs one). On Debian/Ubuntu run `apt-get install -y chromium` as root "
    "(or `sudo apt-get install -y chromium`), or point BROWSER_PATH at an existing "
    "Chrome/Chromium executable."
)


def find_chromium() -> str | None:
    """Return the path of a usable Chromium-based browser, or None.

    BROWSER_PATH wins (it is also what kaleido's choreographer honours), then PATH.
    """
    override = os.environ.get("BROWSER_PATH")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None
