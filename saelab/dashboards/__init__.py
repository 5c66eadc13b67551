"""Dashboards for whole SAEs: every feature's data, Neuronpedia-layout reports, a static site.

* ``build`` (+ ``accumulators``, ``parts``, ``joins``): ``build_dashboards(model, sae, source=...)``,
  one streamed pass (the autointerp examples pass, with a histogram and co-activation counts
  added) plus the data-free parts (logit tables, decoder neighbours) and what other analyses
  found (explanations, specialists, matches at other hooks, the feature map).
* ``data`` (+ ``config``): the dashboards themselves, plain dataclasses saved as gzipped JSON.
* ``reports`` (+ ``schema``): Neuronpedia's bulk-import layout and a ``summary.json`` per SAE,
  and ``load_reports`` to read them back into pandas.
* ``site``: a static site that opens from ``file://`` with nothing fetched from outside.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
