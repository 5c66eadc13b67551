"""What several viz test files share: SAE names for the layer plots, the texts and labels of
the explorer tests, and a parser that reads highlighted HTML back (parsed, not eyeballed)."""

from __future__ import annotations

from html.parser import HTMLParser

SAES = ["L5", "L10", "L15", "L20"]

# The explorers run on the tiny model with small random SAEs (the `saes` and `data` fixtures).
TEXTS = [
    "def add(a, b):\n    return a + b",
    "for i in range(10): print(i)",
    "x^2 + 2x + 1 = 0",
    "The integral of x dx is x^2/2.",
    "Bonjour, comment allez-vous ?",
    "Hola, ¿qué tal estás hoy?",
    "lol this is so funny #win",
    "omg cant wait for the weekend!!!",
    "Pursuant to section 4, the parties agree as follows.",
    "Hey, do you want to grab lunch later?",
]
LABELS = [
    "python",
    "python",
    "math",
    "math",
    "non_english",
    "non_english",
    "social",
    "social",
    "formal",
    "conversational",
]


class _Spans(HTMLParser):
    """Collects every <span class="tok">: its attributes and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[dict] = []
        self._depth = 0  # nesting inside the current token span (the ⏎ glyph is a child span)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "tok":
            self.spans.append({**attrs, "text": ""})
            self._depth = 1
        elif tag == "span" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "span" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.spans[-1]["text"] += data


def parse(fragment: str) -> _Spans:
    parser = _Spans()
    parser.feed(fragment)
    return parser


def alpha(span: dict) -> float:
    style = span["style"]
    return 0.0 if "transparent" in style else float(style.rsplit(",", 1)[1].rstrip(")"))


def data_values(fragment: str) -> list[float]:
    return [float(s["data-value"]) for s in parse(fragment).spans]
