"""How features evolve: matched across SAEs (layers, training snapshots), followed through
depth as lineages, and laid out on 2-D maps.

* ``matching``: ``match_features(sae_a, sae_b, method="decoder" | "activation" | "hungarian")``,
  each feature's best match and a "good match" flag whose threshold comes from a null
  (``nulls``), on similarities from ``similarity``; ``samples`` gives the paired tokens that
  matching by activation reads.
* ``lineages`` (+ ``events``, ``lineage_specialists``): matches chained through depth, with
  persist / split / merge / birth / death counted beside the null.
* ``emergence``: training snapshots matched to the final SAE: when each feature appears,
  when each category's specialist becomes significant.
* ``maps`` (+ ``clusters``): 2-D maps (UMAP, PCA) and clusters of decoder directions.

Names are imported on first use (see ``__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
