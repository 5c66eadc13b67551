"""A static site of an SAE's feature dashboards that opens from ``file://`` with nothing fetched
from outside: :func:`saelab.dashboards.site.write.write_site`.

* ``write``: the folder (checked, built beside it, renamed into place) and its marker file.
* ``payload``: what each page reads, as plain dicts (the landing list, an SAE's index, a feature).
* ``windows``: every shown window's tokens stored once per model (a vocabulary and shards).
* ``encode``: the packed data files (gzip'd JSON or varints, base64, inside a script).
* ``*.html``, ``*.js``, ``site.css``: the pages, copied as they are.
"""
