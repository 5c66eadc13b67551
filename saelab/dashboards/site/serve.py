"""Serve a written site on loopback, for showing it inside Jupyter.

The site itself needs no server: ``index.html`` opens from ``file://``. Inside JupyterLab it
cannot be shown through Jupyter's own file server: that serves files with a ``sandbox`` content
security policy, so the page gets an opaque origin, its script requests go without the login
cookie, and every data file is refused. A plain static server on 127.0.0.1 (a thread of the
kernel, gone with it) has no such rule.
"""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

from saelab.dashboards.site.write import MARKER


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        """No line per request in the notebook's output."""


@dataclass
class SiteServer:
    """A site served at ``url`` until :meth:`close` (or the end of the process)."""

    folder: Path
    url: str
    _server: http.server.ThreadingHTTPServer = field(repr=False)

    def page(self, sae: str | None = None, feature: int | None = None) -> str:
        """The URL of the landing page, an SAE's index, or one feature's page."""
        if sae is None:
            return f"{self.url}/index.html"
        if feature is None:
            return f"{self.url}/sae.html?sae={sae}"
        return f"{self.url}/feature.html?sae={sae}&f={int(feature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SiteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_site(folder: str | Path, port: int = 0) -> SiteServer:
    """Serve the site in ``folder`` (written by :func:`write_site`) on 127.0.0.1 at ``port``
    (0: any free one) from a daemon thread."""
    root = Path(folder).expanduser().resolve()
    if not (root / MARKER).is_file():
        raise FileNotFoundError(f"{root} holds no dashboard site (no {MARKER}); write one with write_site first")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"saelab-site-{root.name}", daemon=True).start()
    return SiteServer(root, f"http://127.0.0.1:{server.server_address[1]}", server)
