"""What the notebook widgets share (the feature explorer, the steering playground): one VBox
of controls and panels, rows that wrap, linked controls set without their observers answering
each other, display through the VBox, and the static page written in one piece.

A widget subclasses :class:`WidgetPanel`, builds its controls, then hands the VBox's children
to :meth:`WidgetPanel._assemble`. State lives on the object, so tests drive the controls from
code and read the state without a browser or a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as ipw

from saelab._util.atomic import atomic_write_text


def row(*children: ipw.Widget, align_items: str | None = None) -> ipw.HBox:
    """Widgets side by side while they fit, wrapping onto the next line when they do not;
    ``align_items="center"`` lines up controls of different heights (a button beside text)."""
    return ipw.HBox(list(children), layout=ipw.Layout(flex_flow="row wrap", align_items=align_items))


def set_given(*pairs: tuple[ipw.ValueWidget, Any]) -> None:
    """Set each ``(control, value)`` in turn as a user would, skipping those whose value is None
    (None keeps the control's value); the controls' observers see every change."""
    for control, value in pairs:
        if value is not None:
            control.value = value


def write_page(path: str | Path, page: str) -> Path:
    """Write a static page (its folder made as needed) so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path


class WidgetPanel:
    """The skeleton of a widget: :attr:`widget` is the VBox that Jupyter displays."""

    widget: ipw.VBox
    _syncing: bool = False
    """True while :meth:`_sync` sets controls; observers return at once when they see it."""

    def _assemble(self, children: Iterable[ipw.Widget]) -> None:
        """Stack the built controls and panels, top to bottom, into :attr:`widget`."""
        self.widget = ipw.VBox(list(children))

    @contextmanager
    def _sync(self) -> Iterator[None]:
        """Set linked controls without their observers answering each other (or re-rendering)."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)
