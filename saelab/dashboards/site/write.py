"""Write the static site of one or several SAEs' dashboards (several hooks of one profile).

The folder opens from ``file://`` with nothing fetched from outside: the pages are the
``*.html``, ``*.js`` and ``site.css`` files beside this module, plotly.js is copied out of the
installed ``plotly`` package, and the data are scripts (see :mod:`.encode`). Layout::

    index.html  sae.html?sae=<key>  feature.html?sae=<key>&f=<id>   saelab-site.json (marker)
    assets/     the pages' CSS and JS, plotly.min.js
    data/site.js                      the SAEs and their summaries
    data/<key>/index.js, f<n>.js      an SAE's table and map; its features, 128 a file
    data/<model>/vocab.js, w<n>.js    a model's token entries; the windows' tokens

The whole folder is built beside ``out`` and renamed into place, so a reader never sees half a
site, and a failed build leaves the old one as it was.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly

from saelab._util.atomic import write_dir_atomically
from saelab.dashboards.data import SaeDashboard
from saelab.dashboards.site.encode import json_bytes, write_pack
from saelab.dashboards.site.payload import BATCH_FEATURES, feature_record, sae_entry, sae_index
from saelab.dashboards.site.windows import WindowStore

log = logging.getLogger(__name__)

MARKER = "saelab-site.json"
MARKER_FORMAT = 1
HERE = Path(__file__).resolve().parent
PAGES = ("index.html", "sae.html", "feature.html")
ASSETS = ("site.css", "common.js", "tokens.js", "landing.js", "sae.js", "map.js", "feature.js")
SITE_ENTRIES = frozenset({*PAGES, "assets", "data", MARKER})
"""Everything a site folder holds at its top level; anything else there is someone else's."""


class SiteFolderError(FileExistsError):
    """``out`` holds something that writing the site would destroy or mix with."""


def write_site(dashboards: SaeDashboard | Sequence[SaeDashboard], out: str | Path, *, title: str | None = None) -> Path:
    """Write the static site of ``dashboards`` into the folder ``out`` and return it.

    ``out`` must be new, empty, or a site of the same SAEs (model, hook, d_sae, source), which is
    then replaced; open ``out/index.html`` in a browser."""
    dashes = _checked(dashboards)
    keys = _keys(dashes)
    identity = [_identity(key, d) for key, d in zip(keys, dashes, strict=True)]
    out = Path(out).expanduser().resolve()
    _check_folder(out, identity)
    title = title or f"saelab dashboards: {', '.join(dict.fromkeys(d.info.model for d in dashes))}"
    start = time.perf_counter()
    marker = {"format": MARKER_FORMAT, "generator": "saelab.dashboards.site", "title": title, "saes": identity}
    write_dir_atomically(out, lambda tmp: _build(tmp, dashes, keys, title, marker))
    log.info("wrote the site of %d SAE(s) to %s in %.1f s", len(dashes), out, time.perf_counter() - start)
    return out


def _checked(dashboards: SaeDashboard | Sequence[SaeDashboard]) -> list[SaeDashboard]:
    dashes = [dashboards] if isinstance(dashboards, SaeDashboard) else list(dashboards)
    if not dashes:
        raise ValueError("write_site needs at least one SaeDashboard")
    wrong = [type(d).__name__ for d in dashes if not isinstance(d, SaeDashboard)]
    if wrong:
        raise TypeError(f"write_site takes SaeDashboard objects (saelab.dashboards.build_dashboards); got {wrong}")
    return dashes


def _keys(dashes: list[SaeDashboard]) -> list[str]:
    """Each SAE's name in URLs and folders: its slug, made safe for both."""
    keys = [re.sub(r"[^A-Za-z0-9._-]", "_", d.info.slug) for d in dashes]
    seen: dict[str, SaeDashboard] = {}
    for key, dash in zip(keys, dashes, strict=True):
        if key in seen:
            raise ValueError(f"two dashboards share the name {key!r} ({seen[key].info.model} {seen[key].info.hook} "
                             f"and {dash.info.model} {dash.info.hook}): a site holds one SAE per hook")  # fmt: skip
        seen[key] = dash
    return keys


def _identity(key: str, dash: SaeDashboard) -> dict[str, Any]:
    info = dash.info
    return {"key": key, "model": info.model, "hook": info.hook, "d_sae": info.d_sae, "source": info.source}


def _model_key(model: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9._-]", "_", model)


def _check_folder(out: Path, identity: list[dict[str, Any]]) -> None:
    """Refuse a folder that holds anything but a site of these same SAEs."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SiteFolderError(f"{out} is a file, not a folder: choose a new folder for the site")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    marker = out / MARKER
    if MARKER not in entries:
        raise SiteFolderError(f"{out} is not empty and is not a saelab site (it has no {MARKER}): "
                              f"write the site into a new or empty folder")  # fmt: skip
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))["saes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SiteFolderError(f"{marker} is unreadable ({err}): delete {out} to rebuild the site there, "
                              "or choose another folder") from None  # fmt: skip
    if _as_set(found) != _as_set(identity):
        raise SiteFolderError(f"{out} holds the site of other SAEs ({_describe(found)}) than these "
                              f"({_describe(identity)}): write to another folder, or delete {out} to "
                              "replace it")  # fmt: skip
    strangers = sorted(entries - SITE_ENTRIES)
    if strangers:
        raise SiteFolderError(f"{out} holds files the site did not write ({', '.join(strangers)}), which "
                              "rebuilding it would delete: move them out, or write to another folder")  # fmt: skip


def _as_set(identity: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {(s.get("model"), s.get("hook"), s.get("d_sae"), s.get("source")) for s in identity}


def _describe(identity: list[dict[str, Any]]) -> str:
    return "; ".join(f"{s.get('model')} {s.get('hook')} d_sae={s.get('d_sae')} on {s.get('source')}" for s in identity)


def _build(root: Path, dashes: list[SaeDashboard], keys: list[str], title: str, marker: dict[str, Any]) -> None:
    root.chmod(0o755)  # mkdtemp makes it private; a site is for reading
    assets = root / "assets"
    assets.mkdir()
    for name in PAGES:
        shutil.copyfile(HERE / name, root / name)
    for name in ASSETS:
        shutil.copyfile(HERE / name, assets / name)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", assets / "plotly.min.js")
    stores: dict[str, WindowStore] = {}
    for key, dash in zip(keys, dashes, strict=True):
        model_key = _model_key(dash.info.model)
        store = stores.setdefault(model_key, WindowStore(model_key))
        _write_sae(root, key, dash, store)
    for store in stores.values():
        store.write(root)
    site = {"title": title, "saes": [{**sae_entry(k, d), "model_key": _model_key(d.info.model)}
                                     for k, d in zip(keys, dashes, strict=True)]}  # fmt: skip
    write_pack(root, "site", json_bytes(site))
    (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _write_sae(root: Path, key: str, dash: SaeDashboard, store: WindowStore) -> None:
    start = time.perf_counter()
    index = sae_index(key, dash)
    index["model_key"] = store.model_key
    write_pack(root, f"{key}/index", json_bytes(index))
    ids = index["ids"]
    for batch, first in enumerate(range(0, len(ids), BATCH_FEATURES)):
        records = [feature_record(dash.features[i], store) for i in ids[first : first + BATCH_FEATURES]]
        write_pack(root, f"{key}/f{batch}", json_bytes({"features": records}))
    log.info("site: %s, %d features in %.1f s", key, len(ids), time.perf_counter() - start)
