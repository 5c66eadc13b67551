"""Small labelled texts for probe and sweep tests: two categories a random SAE can tell apart,
and the probe those tests share, trained under a private feature cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from saelab.interventions.probe import ConceptProbe

CODE = [
    "def add(a, b):\n    return a + b",
    "for i in range(10):\n    print(i)",
    "import os\npath = os.getcwd()",
    "class Box:\n    def __init__(self):\n        self.x = 1",
    "while x < 5:\n    x += 1",
    "if value is None:\n    raise ValueError('missing')",
]
FRENCH = [
    "Je suis allé au marché ce matin avec ma sœur.",
    "Le chat dort sur le canapé depuis une heure.",
    "Nous avons mangé une très bonne soupe hier soir.",
    "Elle aime lire des romans pendant les vacances.",
    "Il fait beau aujourd'hui, allons nous promener.",
    "Les enfants jouent dans le jardin derrière la maison.",
]
TEXTS = CODE + FRENCH
LABELS = ["python"] * len(CODE) + ["non_english"] * len(FRENCH)


@contextmanager
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``SAELAB_CACHE`` in a fresh folder while the block runs (the feature cache is keyed by
    SAE identity, and the tests' random SAEs must not meet the user's cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SAELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield
    finally:
        mp.undo()


def tiny_probe(model, make_sae) -> ConceptProbe:
    """A python / non_english probe on a random 64-feature SAE at blocks.5 of the tiny model."""
    sae = make_sae(model.cfg.d_model, 64, "blocks.5.hook_resid_pre", seed=6)
    return ConceptProbe.train(model, sae, TEXTS, LABELS, window=6, test_fraction=0.34)
