"""Small labelled texts for probe and sweep tests: two categories a random SAE can tell apart."""

from __future__ import annotations

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
